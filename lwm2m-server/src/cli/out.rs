//! Where the admin commands print: standard output, one line at a time, through [`out!`].
//!
//! - A closed pipe ends the command quietly with exit 0, as a reader that has seen enough
//!   (`clients | head -1`) expects; `println!` would panic (exit 101).
//! - Text that came from devices (endpoint names, values) may hold control characters; they are
//!   shown escaped (`\u{1b}`), so that nothing a device sends can drive the operator's terminal.

use std::borrow::Cow;
use std::fmt;
use std::io::{ErrorKind, Write as _};

use crate::registry::is_printable;

/// `println!` for command output: see the module doc.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

/// Prints one line (which may hold line breaks of its own) to standard output, escaping any
/// other unprintable character. Ends the process (exit 0) when the reader has gone.
pub fn print_line(args: fmt::Arguments<'_>) {
    let text = args.to_string();
    let shown: String = text
        .split('\n')
        .map(|l| escape_tabs_kept(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{shown}").and_then(|()| stdout.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("lwm2m-server: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// `text` with every unprintable character (line breaks and tabs included) written as a Rust
/// escape, e.g. `dev\u{1b}[2J` for an endpoint name holding ESC.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| !is_printable(c))
}

fn escape_tabs_kept(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| c != '\t' && !is_printable(c))
}

fn escape_where(text: &str, bad: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&bad) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if bad(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprintable_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape("sensor-1"), "sensor-1");
        assert_eq!(escape("é-ü-雪"), "é-ü-雪");
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape("x\r\ny\0"), "x\\u{d}\\u{a}y\\u{0}");
        assert_eq!(escape("evil\u{202e}txt"), "evil\\u{202e}txt");
        assert_eq!(escape_tabs_kept("a\tb\u{7}"), "a\tb\\u{7}");
    }
}
