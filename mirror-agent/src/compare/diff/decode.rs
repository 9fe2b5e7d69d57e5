//! Undoes a body's content coding (`Content-Encoding`), so that the same
//! document sent gzip'd by one side and plain by the other compares equal.
//!
//! Decoding is bounded: a few KiB of gzip can expand to gigabytes (a
//! decompression bomb), so every stage stops at a decoded-size limit and
//! the body is then not compared.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

use crate::compare::verdict::NotCompared;

/// Why a body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A coding this agent does not know (or a header that is not text).
    UnknownCoding(String),
    /// The bytes are not valid for the coding (corrupt or cut short).
    Corrupt { coding: Coding, detail: String },
    /// Decoding would exceed the limit (bytes).
    TooLarge { limit: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownCoding(coding) => write!(f, "unknown content coding `{coding}`"),
            DecodeError::Corrupt { coding, detail } => {
                write!(f, "the body is not valid {coding}: {detail}")
            }
            DecodeError::TooLarge { limit } => {
                write!(f, "the decoded body is over the limit of {limit} bytes")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for NotCompared {
    fn from(error: DecodeError) -> NotCompared {
        match error {
            DecodeError::TooLarge { .. } => NotCompared::BodyOverCap,
            DecodeError::UnknownCoding(_) | DecodeError::Corrupt { .. } => NotCompared::Undecodable,
        }
    }
}

mirror_common::labelled! {
    /// A content coding this agent undoes (`identity` is no coding at all),
    /// labelled as `Content-Encoding` spells it.
    pub enum Coding {
        /// `gzip` or `x-gzip`, one member or several.
        Gzip => "gzip",
        /// `deflate`: zlib-wrapped as RFC 9110 says, or raw deflate as some
        /// servers send.
        Deflate => "deflate",
        Brotli => "br",
        Zstd => "zstd",
    }
}

/// The codings a `Content-Encoding` value lists, in the order they were
/// applied, `identity` and empty items left out. `None` (no header) is no
/// coding. Several fields of the header are joined with `,` first.
pub fn codings(content_encoding: Option<&[u8]>) -> Result<Vec<Coding>, DecodeError> {
    let Some(value) = content_encoding else {
        return Ok(Vec::new());
    };
    let value = std::str::from_utf8(value)
        .map_err(|_| DecodeError::UnknownCoding(String::from_utf8_lossy(value).into_owned()))?;
    let mut codings = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        let coding = if item.is_empty() || item.eq_ignore_ascii_case("identity") {
            continue;
        } else if item.eq_ignore_ascii_case("gzip") || item.eq_ignore_ascii_case("x-gzip") {
            Coding::Gzip
        } else if item.eq_ignore_ascii_case("deflate") {
            Coding::Deflate
        } else if item.eq_ignore_ascii_case("br") {
            Coding::Brotli
        } else if item.eq_ignore_ascii_case("zstd") {
            Coding::Zstd
        } else {
            let shown: String = item.chars().take(40).collect();
            return Err(DecodeError::UnknownCoding(shown));
        };
        codings.push(coding);
    }
    Ok(codings)
}

/// The body with its content coding undone (codings undone last first),
/// at most `max_decoded` bytes at every stage.
pub fn decode<'a>(
    body: &'a [u8],
    content_encoding: Option<&[u8]>,
    max_decoded: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let mut decoded = Cow::Borrowed(body);
    for coding in codings(content_encoding)?.into_iter().rev() {
        decoded = Cow::Owned(undo(coding, &decoded, max_decoded)?);
    }
    Ok(decoded)
}

/// Undoes one coding.
pub fn undo(coding: Coding, input: &[u8], max_decoded: usize) -> Result<Vec<u8>, DecodeError> {
    match coding {
        Coding::Gzip => read_bounded(
            coding,
            flate2::read::MultiGzDecoder::new(input),
            max_decoded,
        ),
        Coding::Deflate => {
            let zlib = read_bounded(coding, flate2::read::ZlibDecoder::new(input), max_decoded);
            match zlib {
                Err(DecodeError::Corrupt { .. }) => read_bounded(
                    coding,
                    flate2::read::DeflateDecoder::new(input),
                    max_decoded,
                ),
                other => other,
            }
        }
        Coding::Brotli => read_bounded(
            coding,
            brotli_decompressor::Decompressor::new(input, 4096),
            max_decoded,
        ),
        Coding::Zstd => undo_zstd(input, max_decoded),
    }
}

/// Zstandard: one frame or several back to back.
fn undo_zstd(mut input: &[u8], max_decoded: usize) -> Result<Vec<u8>, DecodeError> {
    let corrupt = |detail: String| DecodeError::Corrupt {
        coding: Coding::Zstd,
        detail,
    };
    let mut decoded = Vec::new();
    loop {
        let frame = ruzstd::decoding::StreamingDecoder::new(&mut input)
            .map_err(|error| corrupt(error.to_string()))?;
        let room = max_decoded - decoded.len();
        decoded.extend(read_bounded(Coding::Zstd, frame, room)?);
        if input.is_empty() {
            return Ok(decoded);
        }
    }
}

/// Reads `reader` to its end, failing past `limit` bytes.
fn read_bounded(coding: Coding, reader: impl Read, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut decoded = Vec::new();
    let take = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(take)
        .read_to_end(&mut decoded)
        .map_err(|error| DecodeError::Corrupt {
            coding,
            detail: error.to_string(),
        })?;
    if decoded.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(decoded)
}

/// Bodies encoded in each coding, for the tests of the decoding and of
/// the diff.
#[cfg(test)]
pub(super) mod encode {
    use std::io::Write;

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    pub fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    pub fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    pub fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            encoder.write_all(data).unwrap();
        }
        out
    }

    pub fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{brotli, gzip, raw_deflate, zlib, zstd};
    use super::*;

    const LIMIT: usize = 1 << 20;

    const DOCUMENT: &[u8] =
        br#"{"items":[{"id":1,"price":9.5},{"id":2,"price":3}],"served_at":"now"}"#;

    fn decoded(body: &[u8], coding: &str) -> Result<Vec<u8>, DecodeError> {
        decode(body, Some(coding.as_bytes()), LIMIT).map(Cow::into_owned)
    }

    #[test]
    fn each_coding_is_undone() {
        for (coding, body) in [
            ("gzip", gzip(DOCUMENT)),
            ("x-gzip", gzip(DOCUMENT)),
            ("GZIP", gzip(DOCUMENT)),
            ("deflate", zlib(DOCUMENT)),
            ("deflate", raw_deflate(DOCUMENT)),
            ("br", brotli(DOCUMENT)),
            ("zstd", zstd(DOCUMENT)),
            ("identity", DOCUMENT.to_vec()),
        ] {
            assert_ne!(
                coding != "identity",
                body == DOCUMENT,
                "{coding}: really encoded"
            );
            assert_eq!(decoded(&body, coding).as_deref(), Ok(DOCUMENT), "{coding}");
        }
    }

    #[test]
    fn no_header_or_identity_borrows_the_body_as_it_is() {
        assert!(matches!(decode(DOCUMENT, None, LIMIT), Ok(Cow::Borrowed(b)) if b == DOCUMENT));
        assert!(matches!(
            decode(DOCUMENT, Some(b" identity , "), LIMIT),
            Ok(Cow::Borrowed(b)) if b == DOCUMENT
        ));
    }

    #[test]
    fn a_list_of_codings_is_undone_last_first() {
        // Content-Encoding: gzip, br = gzip applied first, then br.
        let body = brotli(&gzip(DOCUMENT));
        assert_eq!(decoded(&body, "gzip, br").as_deref(), Ok(DOCUMENT));
        assert!(decoded(&body, "br, gzip").is_err(), "the order matters");
        assert_eq!(
            codings(Some(b"gzip, identity,br")),
            Ok(vec![Coding::Gzip, Coding::Brotli])
        );
    }

    #[test]
    fn several_gzip_members_and_several_zstd_frames_are_all_decoded() {
        let mut gzips = gzip(b"first ");
        gzips.extend(gzip(b"second"));
        assert_eq!(decoded(&gzips, "gzip").as_deref(), Ok(&b"first second"[..]));
        let mut frames = zstd(b"first ");
        frames.extend(zstd(b"second"));
        assert_eq!(
            decoded(&frames, "zstd").as_deref(),
            Ok(&b"first second"[..])
        );
    }

    #[test]
    fn corrupt_or_cut_bodies_are_undecodable() {
        let mut flipped = gzip(DOCUMENT);
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let gzipped = gzip(DOCUMENT);
        let cut = &gzipped[..gzipped.len() - 6];
        let zstd_cut = zstd(DOCUMENT);
        let zstd_cut = &zstd_cut[..zstd_cut.len() - 3];
        let brotli_cut = brotli(DOCUMENT);
        let brotli_cut = &brotli_cut[..brotli_cut.len() - 3];
        let zlib_cut = zlib(DOCUMENT);
        let zlib_cut = &zlib_cut[..zlib_cut.len() / 2];
        let raw_cut = raw_deflate(DOCUMENT);
        let raw_cut = &raw_cut[..raw_cut.len() / 2];
        for (coding, body) in [
            ("deflate", zlib_cut),
            ("deflate", raw_cut),
            ("gzip", &b"not gzip at all"[..]),
            ("gzip", &flipped[..]),
            ("gzip", cut),
            ("br", &b"\xff\xff\xff\xff not brotli"[..]),
            ("br", brotli_cut),
            ("zstd", &b"not zstd"[..]),
            ("zstd", zstd_cut),
            ("deflate", &b"\xff\xff\xff\xff not deflate"[..]),
        ] {
            let error = decoded(body, coding).expect_err(coding);
            assert!(
                matches!(error, DecodeError::Corrupt { .. }),
                "{coding}: {error}"
            );
            assert_eq!(NotCompared::from(error), NotCompared::Undecodable);
        }
    }

    #[test]
    fn an_unknown_coding_is_undecodable() {
        for header in [&b"compress"[..], b"gzip, lzma", b"\xffgzip"] {
            let error = decode(DOCUMENT, Some(header), LIMIT).expect_err("unknown");
            assert!(matches!(error, DecodeError::UnknownCoding(_)), "{error}");
            assert_eq!(NotCompared::from(error), NotCompared::Undecodable);
        }
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        for (coding, bomb) in [
            ("gzip", gzip(&zeros)),
            ("deflate", zlib(&zeros)),
            ("br", brotli(&zeros)),
            ("zstd", zstd(&zeros)),
        ] {
            assert!(bomb.len() < 64 << 10, "{coding}: {} bytes", bomb.len());
            let error = decoded(&bomb, coding).expect_err(coding);
            assert_eq!(error, DecodeError::TooLarge { limit: LIMIT }, "{coding}");
            assert_eq!(NotCompared::from(error), NotCompared::BodyOverCap);
        }
        let exactly = vec![7u8; 1000];
        assert_eq!(
            decode(&gzip(&exactly), Some(b"gzip"), 1000).map(|d| d.len()),
            Ok(1000)
        );
        assert!(decode(&gzip(&exactly), Some(b"gzip"), 999).is_err());
    }
}
