//! The report drawn for people: `/compare.html` (`page`), the
//! `compare-report` command's text (`terminal`), and the words both share
//! with the periodic summary (`words`). `/compare`'s JSON is the report's
//! snapshot itself (see `report`).

pub mod page;
pub mod terminal;
pub mod words;

pub use page::{render_html, render_html_refreshing};
pub use terminal::render_text;
pub use words::{percent_text, verdict_line, verdict_lines, verdict_word};
