//! Incremental decoder of the chunked transfer coding (RFC 9112 §7.1),
//! strict like the heads: every line ends with CRLF (a bare LF or CR is
//! invalid, since servers that accept it and servers that do not would
//! find different ends). Chunk sizes are read as [`syntax`](super::syntax)
//! says.
//!
//! It never buffers framing: chunk-size lines and extensions are consumed
//! byte by byte, chunk data is handed back as ranges of the input so the
//! framer can copy it straight into the body (or skip it), and trailer
//! lines are appended to a caller's buffer (or only counted).

use super::syntax::{MAX_CHUNK_SIZE_DIGITS, hex_digit};

/// Longest chunk extension accepted (bytes after the size, before the CRLF).
const MAX_EXTENSION: u32 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        value: u64,
        digits: u8,
    },
    /// Past the size: whitespace and extensions up to the line end.
    Extension {
        value: u64,
        len: u32,
    },
    /// Saw CR of the size line.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    /// Expecting CRLF after chunk data.
    DataCr,
    DataLf,
    /// In the trailer section; `line` bytes into the current line, whose
    /// last byte was CR if `last_cr`.
    Trailer {
        line: u32,
        last_cr: bool,
    },
    Done,
}

/// What one [`ChunkedDecoder::step`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Framing bytes consumed; call again with the rest.
    Progress,
    /// The consumed bytes are chunk data, part of the body.
    Data,
    /// The whole chunked body, trailers included, is complete.
    Done,
    /// The input is not chunked coding.
    Invalid,
    /// The trailer section is longer than allowed.
    TrailersTooLarge,
}

#[derive(Clone, Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Trailer bytes seen so far (kept or not).
    trailer_bytes: usize,
    /// Length of the trailer buffer when the current trailer line started.
    line_start: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            trailer_bytes: 0,
            line_start: 0,
        }
    }
}

impl ChunkedDecoder {
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// Decodes from the start of `input` (not empty). Returns how many bytes
    /// were consumed (at least one) and what they were. Trailer lines are
    /// appended to `trailers` when it is given; `max_trailers` bounds them.
    pub(crate) fn step(
        &mut self,
        input: &[u8],
        mut trailers: Option<&mut Vec<u8>>,
        max_trailers: usize,
    ) -> (usize, Step) {
        if let State::Data { remaining } = self.state {
            let n = (input.len() as u64).min(remaining);
            let remaining = remaining - n;
            self.state = if remaining == 0 {
                State::DataCr
            } else {
                State::Data { remaining }
            };
            return (n as usize, Step::Data);
        }
        for (i, &b) in input.iter().enumerate() {
            let consumed = i + 1;
            match self.state {
                State::Size { value, digits } => match hex_digit(b) {
                    Some(d) => {
                        if usize::from(digits) >= MAX_CHUNK_SIZE_DIGITS {
                            return (consumed, Step::Invalid);
                        }
                        self.state = State::Size {
                            value: (value << 4) | d,
                            digits: digits + 1,
                        };
                    }
                    None if digits == 0 => return (consumed, Step::Invalid),
                    None => match b {
                        b';' | b' ' | b'\t' => self.state = State::Extension { value, len: 1 },
                        b'\r' => self.state = State::SizeLf { value },
                        _ => return (consumed, Step::Invalid),
                    },
                },
                State::Extension { value, len } => match b {
                    b'\r' => self.state = State::SizeLf { value },
                    _ if b < b' ' && b != b'\t' || b == 0x7f => return (consumed, Step::Invalid),
                    _ if len >= MAX_EXTENSION => return (consumed, Step::Invalid),
                    _ => {
                        self.state = State::Extension {
                            value,
                            len: len + 1,
                        }
                    }
                },
                State::SizeLf { value } => {
                    if b != b'\n' {
                        return (consumed, Step::Invalid);
                    }
                    self.size_line_done(value, &trailers);
                }
                State::DataCr => match b {
                    b'\r' => self.state = State::DataLf,
                    _ => return (consumed, Step::Invalid),
                },
                State::DataLf => {
                    if b != b'\n' {
                        return (consumed, Step::Invalid);
                    }
                    self.state = State::Size {
                        value: 0,
                        digits: 0,
                    };
                }
                State::Trailer { line, last_cr } => {
                    // A field line continued on the next (obs-fold): refused
                    // in trailers as in heads (RFC 9112 §5.2).
                    if line == 0 && matches!(b, b' ' | b'\t') {
                        return (consumed, Step::Invalid);
                    }
                    self.trailer_bytes += 1;
                    if let Some(t) = trailers.as_deref_mut() {
                        t.push(b);
                    }
                    if (b == b'\n') != last_cr {
                        // A bare LF, or a bare CR.
                        return (consumed, Step::Invalid);
                    }
                    if b == b'\n' {
                        if line == 1 {
                            // The empty line that ends the message.
                            if let Some(t) = trailers.as_deref_mut() {
                                t.truncate(self.line_start);
                            }
                            self.state = State::Done;
                            return (consumed, Step::Done);
                        }
                        self.line_start = trailers.as_deref().map_or(0, Vec::len);
                        self.state = State::Trailer {
                            line: 0,
                            last_cr: false,
                        };
                    } else {
                        self.state = State::Trailer {
                            line: line.saturating_add(1),
                            last_cr: b == b'\r',
                        };
                    }
                    if self.trailer_bytes > max_trailers {
                        return (consumed, Step::TrailersTooLarge);
                    }
                }
                State::Data { .. } => return (i, Step::Progress),
                State::Done => return (consumed, Step::Invalid),
            }
        }
        (input.len(), Step::Progress)
    }

    /// A chunk-size line ended: data follows, or the trailer section.
    fn size_line_done(&mut self, value: u64, trailers: &Option<&mut Vec<u8>>) {
        if value == 0 {
            self.state = State::Trailer {
                line: 0,
                last_cr: false,
            };
            self.line_start = trailers.as_deref().map_or(0, Vec::len);
        } else {
            self.state = State::Data { remaining: value };
        }
    }
}
