#!/usr/bin/env bash
# Provisions a Debian 12 machine with mirror-agent and the demo of the shadow
# exercise: myapp v1 on port 80 (the primary), v2 on 9000 and v3 on 9001 (the
# shadows), and mirror-agent copying what v1 receives to v2 and v3.
#
# The Vagrantfile runs `provision.sh all`; CI (cargo xtask deploy-check) runs
# the same phases on a machine without systemd as PID 1. Every phase is
# idempotent: it installs or changes only what is missing or out of date.
#
# Usage: deploy/provision.sh [OPTIONS] PHASE...
#
# Phases, in the order `all` runs them:
#   packages    Debian packages to build and run (apt-get, only the missing ones)
#   toolchain   rustup + stable if missing, then `cargo xtask setup` (the eBPF
#               nightly, rust-src, bpf-linker: see xtask/src/setup.rs)
#   build       cargo build --release -p mirror-agent (--profile debug: the
#               dev profile, as `cargo xtask test` builds it)
#   install     /usr/local/bin/mirror-agent, the `mirror` user, /etc/mirror/
#               (mirror.toml, mirror.env: kept if present), the systemd unit,
#               checked with `systemd-analyze verify`
#   demo        the demo services: /usr/local/lib/mirror/myapp.py, the unit
#               myapp@.service (myapp@v1, @v2, @v3), /etc/mirror/demo/vN.env
#   start       starts (and enables) myapp@v1..v3 and mirror-agent; without
#               systemd as PID 1, runs them in the background instead, as the
#               unit would (same user, capabilities and config)
#   check       v1, v2 and v3 answer with their version, a request to v1
#               reaches v2 and v3, the agent serves /metrics
# And, not part of `all`:
#   stop        stops what `start` started
#
# Options:
#   --src DIR       the mirror repository (default: the one holding this script)
#   --no-start      with `all`: every phase but start and check
#   --no-systemd    start/stop/check background processes even if systemd runs
#   --run-dir DIR   pid and log files of the background mode (default
#                   /run/mirror-demo)
#   --force-config  install: overwrite /etc/mirror/mirror.toml and mirror.env
#   --profile P     build and install the `release` (default) or `debug` build
#   -h, --help      this text
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(cd "$SCRIPT_DIR/.." && pwd)"
RUN_DIR=/run/mirror-demo
NO_START=0
NO_SYSTEMD=0
FORCE_CONFIG=0
PROFILE=release

PREFIX_BIN=/usr/local/bin
LIB_DIR=/usr/local/lib/mirror
ETC_DIR=/etc/mirror
UNIT_DIR=/etc/systemd/system
AGENT_USER=mirror
# The capabilities of the unit (AmbientCapabilities=), in setpriv's spelling.
AGENT_CAPS=bpf,net_admin,perfmon
METRICS_URL=http://127.0.0.1:9464
# name:port of the demo services; v1 is the primary.
DEMO_APPS=(v1:80 v2:9000 v3:9001)
PACKAGES=(ca-certificates curl git build-essential pkg-config python3 iproute2 util-linux procps)

log() { printf '==> provision: %s\n' "$*"; }
die() {
	printf 'provision: error: %s\n' "$*" >&2
	exit 1
}
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

need_root() { [ "$(id -u)" -eq 0 ] || die "phase $1 needs root (sudo $0 $1)"; }

systemd_running() { [ "$NO_SYSTEMD" -eq 0 ] && [ -d /run/systemd/system ]; }

# Puts cargo on PATH when rustup installed it for this user.
cargo_env() {
	if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
		# shellcheck source=/dev/null
		. "$HOME/.cargo/env"
	fi
}

# Copies SRC to DEST (mode MODE) unless DEST already has the same content;
# prints whether it changed. Returns 0 if it did, 1 if not.
install_file() {
	local mode="$1" src="$2" dest="$3"
	if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
		return 1
	fi
	install -D -m "$mode" "$src" "$dest.new"
	mv -f "$dest.new" "$dest"
	echo "    installed $dest"
	return 0
}

phase_packages() {
	need_root packages
	local missing=() package
	for package in "${PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q ' ok installed$'; then
			missing+=("$package")
		fi
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		echo "    ok: ${PACKAGES[*]}"
		return
	fi
	log "installing ${missing[*]}"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

phase_toolchain() {
	cargo_env
	if ! command -v rustup >/dev/null; then
		log "installing rustup and the stable toolchain"
		curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
			sh -s -- -y --profile minimal --default-toolchain stable
		# shellcheck source=/dev/null
		. "$HOME/.cargo/env"
	fi
	# The eBPF nightly with rust-src, bpf-linker against LLVM 22, and the
	# Debian packages they need: one source of truth, xtask/src/setup.rs.
	(cd "$SRC" && cargo xtask setup)
}

agent_binary() { echo "${CARGO_TARGET_DIR:-$SRC/target}/$PROFILE/mirror-agent"; }

phase_build() {
	cargo_env
	command -v cargo >/dev/null || die "cargo not found: run the toolchain phase first"
	local flags=(--locked -p mirror-agent --bins)
	[ "$PROFILE" = debug ] || flags+=(--release)
	(cd "$SRC" && cargo build "${flags[@]}")
	echo "    built $(agent_binary)"
}

phase_install() {
	need_root install
	local binary
	binary="$(agent_binary)"
	[ -x "$binary" ] || die "$binary is missing: run the build phase first"
	install_file 0755 "$binary" "$PREFIX_BIN/mirror-agent" || echo "    ok: $PREFIX_BIN/mirror-agent"

	if ! getent passwd "$AGENT_USER" >/dev/null; then
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin --comment "mirror-agent" "$AGENT_USER"
		echo "    created user $AGENT_USER"
	fi

	install -d -m 0755 "$ETC_DIR"
	local name
	for name in mirror.toml mirror.env; do
		if [ -f "$ETC_DIR/$name" ] && [ "$FORCE_CONFIG" -eq 0 ]; then
			cmp -s "$SCRIPT_DIR/config/$name" "$ETC_DIR/$name" ||
				echo "    kept $ETC_DIR/$name (yours; --force-config replaces it)"
		else
			install_file 0644 "$SCRIPT_DIR/config/$name" "$ETC_DIR/$name" || true
		fi
	done

	install_file 0644 "$SCRIPT_DIR/systemd/mirror-agent.service" "$UNIT_DIR/mirror-agent.service" || true
	verify_units mirror-agent.service
	if systemd_running; then systemctl daemon-reload; fi
	echo "    ok: $UNIT_DIR/mirror-agent.service"
}

# systemd-analyze verify works without systemd as PID 1; it wants the
# binaries of ExecStart= to exist, so it runs after they are installed.
verify_units() {
	if ! command -v systemd-analyze >/dev/null; then
		echo "    (systemd-analyze not installed: units not verified)"
		return
	fi
	local unit
	for unit in "$@"; do
		systemd-analyze verify "$UNIT_DIR/$unit" || die "systemd-analyze verify $UNIT_DIR/$unit failed"
	done
	echo "    verified: $*"
}

phase_demo() {
	need_root demo
	install_file 0755 "$SCRIPT_DIR/demo/myapp.py" "$LIB_DIR/myapp.py" || true
	local app name
	for app in "${DEMO_APPS[@]}"; do
		name="${app%%:*}"
		install_file 0644 "$SCRIPT_DIR/demo/$name.env" "$ETC_DIR/demo/$name.env" || true
	done
	install_file 0644 "$SCRIPT_DIR/systemd/myapp@.service" "$UNIT_DIR/myapp@.service" || true
	# A template is verified through an instance of it.
	ln -sf myapp@.service "$UNIT_DIR/myapp@v1.service"
	verify_units myapp@v1.service
	rm -f "$UNIT_DIR/myapp@v1.service"
	if systemd_running; then systemctl daemon-reload; fi
	echo "    ok: myapp@v1 (port 80), myapp@v2 (9000), myapp@v3 (9001)"
}

demo_units() {
	local app
	for app in "${DEMO_APPS[@]}"; do echo "myapp@${app%%:*}.service"; done
}

phase_start() {
	need_root start
	if systemd_running; then
		# `cargo xtask setup` installs nginx for the benches; its unit would
		# take port 80 from myapp@v1 at the next boot.
		if systemctl is-enabled --quiet nginx.service 2>/dev/null; then
			systemctl disable --now nginx.service
			echo "    disabled nginx.service (myapp@v1 serves port 80)"
		fi
		# shellcheck disable=SC2046
		systemctl enable --now $(demo_units)
		systemctl enable mirror-agent.service
		# Picks up a new binary, unit or config.
		systemctl restart mirror-agent.service
	else
		start_background
	fi
	wait_ready
}

# Without systemd: the same programs, users, capabilities and config as the
# units, as background processes with pid and log files in RUN_DIR.
start_background() {
	install -d -m 0755 "$RUN_DIR"
	local app name port
	for app in "${DEMO_APPS[@]}"; do
		name="${app%%:*}"
		# shellcheck source=/dev/null
		port="$(. "$ETC_DIR/demo/$name.env" && echo "$MYAPP_PORT")"
		spawn "myapp-$name" nobody nogroup net_bind_service \
			/usr/bin/python3 "$LIB_DIR/myapp.py" --name "$name" --port "$port"
	done
	local args
	# shellcheck source=/dev/null
	args="$(. "$ETC_DIR/mirror.env" && echo "${MIRROR_ARGS:-}")"
	# LimitMEMLOCK=infinity of the unit (only matters before Linux 5.11).
	ulimit -l unlimited 2>/dev/null || true
	# shellcheck disable=SC2086
	spawn mirror-agent "$AGENT_USER" "$AGENT_USER" "$AGENT_CAPS" \
		"$PREFIX_BIN/mirror-agent" --config "$ETC_DIR/mirror.toml" $args
}

# Whether PID runs: exists and is not a zombie (an init that does not reap
# leaves those behind).
alive() {
	local state
	state="$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)"
	[ -n "$state" ] && [ "$state" != Z ]
}

# spawn NAME USER GROUP CAPS PROGRAM ARGS...: runs PROGRAM as USER with
# exactly CAPS (ambient, as AmbientCapabilities= does) in the background.
spawn() {
	local name="$1" user="$2" group="$3" caps="$4"
	shift 4
	local pidfile="$RUN_DIR/$name.pid"
	if [ -f "$pidfile" ] && alive "$(cat "$pidfile")"; then
		echo "    ok: $name already runs (pid $(cat "$pidfile"))"
		return
	fi
	local set="-all,+${caps//,/,+}"
	setpriv --reuid="$user" --regid="$group" --clear-groups --no-new-privs \
		--inh-caps="$set" --ambient-caps="$set" --bounding-set="$set" \
		"$@" </dev/null >"$RUN_DIR/$name.log" 2>&1 &
	echo $! >"$pidfile"
	echo "    started $name (pid $!, log $RUN_DIR/$name.log)"
}

# Every demo service answers, and the agent is attached (/readyz).
wait_ready() {
	local app port tries
	for app in "${DEMO_APPS[@]}"; do
		port="${app#*:}"
		for tries in $(seq 50); do
			curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
			[ "$tries" -lt 50 ] || die "myapp ${app%%:*} does not answer on port $port$(where_logs "myapp-${app%%:*}")"
			sleep 0.2
		done
	done
	for tries in $(seq 100); do
		curl -fsS -o /dev/null "$METRICS_URL/readyz" 2>/dev/null && break
		[ "$tries" -lt 100 ] || die "mirror-agent is not ready ($METRICS_URL/readyz)$(where_logs mirror-agent)"
		sleep 0.2
	done
	echo "    ready: myapp v1, v2, v3 and mirror-agent"
}

where_logs() {
	if systemd_running; then
		echo "; see journalctl -u ${1/myapp-/myapp@}"
	else
		echo "; its log, $RUN_DIR/$1.log:"
		tail -n 20 "$RUN_DIR/$1.log" 2>/dev/null || true
	fi
}

phase_stop() {
	need_root stop
	if systemd_running; then
		# shellcheck disable=SC2046
		systemctl stop mirror-agent.service $(demo_units)
		return
	fi
	local pidfile pid name
	for pidfile in "$RUN_DIR"/*.pid; do
		[ -f "$pidfile" ] || continue
		pid="$(cat "$pidfile")"
		name="$(basename "$pidfile" .pid)"
		if alive "$pid" && kill -TERM "$pid" 2>/dev/null; then
			for _ in $(seq 100); do
				alive "$pid" || break
				sleep 0.1
			done
			if alive "$pid"; then
				kill -KILL "$pid" 2>/dev/null || true
				echo "    $name (pid $pid) ignored SIGTERM: killed"
			else
				echo "    stopped $name (pid $pid)"
			fi
		fi
		rm -f "$pidfile"
	done
}

# The lines a service logged, from its journal or its background log.
service_log() {
	if systemd_running; then
		journalctl -q -o cat -u "myapp@$1.service" --since "-5min" 2>/dev/null || true
	else
		cat "$RUN_DIR/myapp-$1.log" 2>/dev/null || true
	fi
}

phase_check() {
	local app name port answer
	for app in "${DEMO_APPS[@]}"; do
		name="${app%%:*}"
		port="${app#*:}"
		answer="$(curl -fsS --max-time 5 "http://127.0.0.1:$port/")" ||
			die "myapp $name does not answer on port $port"
		# myapp answers {"app": "myapp", "version": "NAME"}.
		[ "$answer" = "{\"app\": \"myapp\", \"version\": \"$name\"}" ] ||
			die "port $port answered '$answer', not myapp $name's {\"app\": \"myapp\", \"version\": \"$name\"}"
		echo "    ok: port $port answers '$answer'"
	done
	# A request to v1 that only this check sends: its copies must reach the
	# shadows, marked by mirror.
	local path
	path="/provision-check-$$-$RANDOM"
	curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:80$path" || die "v1 does not answer $path"
	local shadow tries
	for app in "${DEMO_APPS[@]:1}"; do
		shadow="${app%%:*}"
		for tries in $(seq 50); do
			service_log "$shadow" | grep -F " $path " | grep -q 'mirrored by' && break
			[ "$tries" -lt 50 ] ||
				die "the request $path to v1 did not reach $shadow within 10 s$(where_logs "myapp-$shadow")$(where_logs mirror-agent)"
			sleep 0.2
		done
		echo "    ok: $shadow received a copy of GET $path"
	done
	local metrics
	metrics="$(curl -fsS --max-time 5 "$METRICS_URL/metrics")" ||
		die "mirror-agent does not serve $METRICS_URL/metrics"
	grep -q '^mirror_' <<<"$metrics" || die "no mirror_ metrics at $METRICS_URL/metrics"
	echo "    ok: $METRICS_URL/metrics"
}

main() {
	local phases=()
	while [ $# -gt 0 ]; do
		case "$1" in
		--src)
			SRC="$(cd "${2:?--src needs a directory}" && pwd)"
			shift
			;;
		--run-dir)
			RUN_DIR="${2:?--run-dir needs a directory}"
			shift
			;;
		--profile)
			PROFILE="${2:?--profile needs release or debug}"
			case "$PROFILE" in release | debug) ;; *) die "--profile $PROFILE: release or debug" ;; esac
			shift
			;;
		--no-start) NO_START=1 ;;
		--no-systemd) NO_SYSTEMD=1 ;;
		--force-config) FORCE_CONFIG=1 ;;
		-h | --help)
			usage
			exit 0
			;;
		all)
			phases+=(packages toolchain build install demo)
			[ "$NO_START" -eq 1 ] || phases+=(start check)
			;;
		packages | toolchain | build | install | demo | start | check | stop) phases+=("$1") ;;
		*) die "unknown phase or option '$1' (see $0 --help)" ;;
		esac
		shift
	done
	[ "${#phases[@]}" -gt 0 ] || {
		usage
		exit 2
	}
	# `all --no-start` given as `--no-start all` works too.
	if [ "$NO_START" -eq 1 ]; then
		local kept=() phase
		for phase in "${phases[@]}"; do
			case "$phase" in start | check) ;; *) kept+=("$phase") ;; esac
		done
		phases=("${kept[@]}")
	fi
	local phase
	for phase in "${phases[@]}"; do
		log "$phase"
		"phase_$phase"
	done
}

main "$@"
