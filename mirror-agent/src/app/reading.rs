//! A replay's files, read on a thread of their own. Opening a FIFO that no
//! one writes to, or a read that never returns, blocks the thread, never
//! the replay: a stop signal still ends every wait at once. The thread
//! opens one file and hands its items on through a small bounded channel,
//! so it waits when the replay waits (memory stays bounded by the targets'
//! queues, not by the file); a replay that stops drops the channel, and a
//! thread still blocked in a read ends with the process.

use tokio::sync::mpsc;

use crate::file::{Item, Source, SourceStats};

/// Items read ahead of the replay: enough that the thread rarely waits
/// for the replay, few enough that a file of large requests adds little.
const READ_AHEAD: usize = 64;

/// What the reading thread hands on.
// Items are most messages: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Message {
    /// An item, with the source's counts and progress once it was read.
    Item {
        item: Item,
        stats: SourceStats,
        bytes: u64,
    },
    /// The end of the file: the source itself, for its final counts.
    End(Box<Source>),
    /// The file could not be opened or read on.
    Failed(anyhow::Error),
}

/// What [`Reader::next`] gives.
// Items are most of what is read: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub(super) enum Read {
    Item(Item),
    /// The file is read to its end.
    End(Box<Source>),
}

/// One file being read.
pub(super) struct Reader {
    messages: mpsc::Receiver<Message>,
    /// The counts as of the last item taken.
    stats: SourceStats,
    bytes: u64,
}

impl Reader {
    /// Opens a file with `open` and reads it, both on a new thread.
    pub(super) fn spawn(
        open: impl FnOnce() -> anyhow::Result<Source> + Send + 'static,
    ) -> anyhow::Result<Self> {
        let (send, messages) = mpsc::channel(READ_AHEAD);
        std::thread::Builder::new()
            .name("replay-read".into())
            .spawn(move || {
                let mut source = match open() {
                    Ok(source) => source,
                    Err(err) => {
                        let _ = send.blocking_send(Message::Failed(err));
                        return;
                    }
                };
                loop {
                    let message = match source.next_item() {
                        Ok(Some(item)) => Message::Item {
                            item,
                            stats: source.stats(),
                            bytes: source.bytes_read(),
                        },
                        Ok(None) => {
                            let _ = send.blocking_send(Message::End(Box::new(source)));
                            return;
                        }
                        Err(err) => {
                            let _ = send.blocking_send(Message::Failed(err));
                            return;
                        }
                    };
                    // Sending fails once the replay stopped taking items.
                    if send.blocking_send(message).is_err() {
                        return;
                    }
                }
            })
            .map_err(|err| anyhow::anyhow!("cannot start a thread to read the file: {err}"))?;
        Ok(Self {
            messages,
            stats: SourceStats::default(),
            bytes: 0,
        })
    }

    /// The next item, or the end of the file. Cancel-safe: dropping the
    /// future loses nothing.
    pub(super) async fn next(&mut self) -> anyhow::Result<Read> {
        match self.messages.recv().await {
            Some(Message::Item { item, stats, bytes }) => {
                self.stats = stats;
                self.bytes = bytes;
                Ok(Read::Item(item))
            }
            Some(Message::End(source)) => {
                self.stats = source.stats();
                self.bytes = source.bytes_read();
                Ok(Read::End(source))
            }
            Some(Message::Failed(err)) => Err(err),
            None => Err(anyhow::anyhow!("the thread reading the file ended early")),
        }
    }

    /// The source's counts as of the last item taken (a replay stopped in
    /// the middle of a file counts what it took).
    pub(super) fn stats(&self) -> SourceStats {
        self.stats
    }

    /// How far into the file the items taken go, in bytes of the file.
    pub(super) fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_that_never_opens_leaves_the_reader_waiting_not_the_caller() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let mut reader = Reader::spawn(move || {
            // As a FIFO without a writer: open does not return (until the
            // test lets it fail).
            let _ = wait.recv();
            Err(anyhow::anyhow!("opened late"))
        })
        .unwrap();
        let next = tokio::time::timeout(std::time::Duration::from_millis(50), reader.next()).await;
        assert!(next.is_err(), "nothing to read yet");
        release.send(()).unwrap();
        let err = reader.next().await.err().expect("the open failed");
        assert_eq!(err.to_string(), "opened late");
    }

    #[tokio::test]
    async fn a_files_items_come_in_order_then_its_source_with_the_counts() {
        let path = std::env::temp_dir().join(format!("mirror-reading-{}.gor", std::process::id()));
        let mut file = Vec::new();
        for (id, path) in [("a", "/1"), ("b", "/2")] {
            let meta = crate::file::PayloadMeta {
                kind: crate::file::PayloadKind::Request,
                id: id.into(),
                timestamp_ns: 1,
                latency_ns: -1,
            };
            let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
            crate::file::gor::encode(&meta, request.as_bytes(), &mut file).unwrap();
        }
        std::fs::write(&path, &file).unwrap();
        let open = {
            let path = path.clone();
            move || Source::gor(&path, crate::http::HttpConfig::default())
        };
        let mut reader = Reader::spawn(open).unwrap();
        let mut ids = Vec::new();
        let source = loop {
            match reader.next().await.unwrap() {
                Read::Item(Item::Request(recorded)) => {
                    ids.push(recorded.id.unwrap());
                    // The counts as of the item taken.
                    assert_eq!(reader.stats().requests, ids.len() as u64);
                }
                Read::Item(other) => panic!("{other:?}"),
                Read::End(source) => break source,
            }
        };
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(source.stats().read, 2);
        assert_eq!(reader.bytes_read(), file.len() as u64);
        let _ = std::fs::remove_file(&path);
    }
}
