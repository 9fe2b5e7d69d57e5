//! Incremental decoder of the chunked transfer coding (RFC 9112 §7.1).
//!
//! It never buffers framing: chunk-size lines and extensions are consumed
//! byte by byte, chunk data is handed back as ranges of the input so the
//! framer can copy it straight into the body (or skip it), and trailer
//! lines are appended to a caller's buffer (or only counted).

/// Longest chunk extension accepted (bytes after the size, before the CRLF).
const MAX_EXTENSION: u32 = 4096;
/// Hex digits of a chunk size: 15 keep it below 2^60.
const MAX_SIZE_DIGITS: u8 = 15;

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
    /// first byte was CR if `first_cr`.
    Trailer {
        line: u32,
        first_cr: bool,
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

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
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
                State::Size { value, digits } => match hex(b) {
                    Some(d) => {
                        if digits >= MAX_SIZE_DIGITS {
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
                        b'\n' => self.size_line_done(value, &trailers),
                        _ => return (consumed, Step::Invalid),
                    },
                },
                State::Extension { value, len } => match b {
                    b'\r' => self.state = State::SizeLf { value },
                    b'\n' => self.size_line_done(value, &trailers),
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
                    b'\n' => {
                        self.state = State::Size {
                            value: 0,
                            digits: 0,
                        }
                    }
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
                State::Trailer { line, first_cr } => {
                    self.trailer_bytes += 1;
                    if let Some(t) = trailers.as_deref_mut() {
                        t.push(b);
                    }
                    if b == b'\n' {
                        if line == 0 || (line == 1 && first_cr) {
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
                            first_cr: false,
                        };
                    } else {
                        self.state = State::Trailer {
                            line: line.saturating_add(1),
                            first_cr: if line == 0 { b == b'\r' } else { first_cr },
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
                first_cr: false,
            };
            self.line_start = trailers.as_deref().map_or(0, Vec::len);
        } else {
            self.state = State::Data { remaining: value };
        }
    }
}
