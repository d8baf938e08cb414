//! Asking before a bulk change: one question on stderr, one answer line from stdin.

use std::io::{self, BufRead, Write};

use crate::error::CliError;

/// Asks `question` on stderr and reads one line from stdin: `y` or `yes` (any case) goes ahead,
/// anything else (including end of input) declines with an error naming `--yes`.
pub fn confirm(question: &str) -> Result<(), CliError> {
    let mut err = io::stderr().lock();
    write!(err, "{question} [y/N] ")
        .and_then(|()| err.flush())
        .map_err(|e| CliError::io("writing to stderr", e))?;
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::io("reading the answer from stdin", e))?;
    if is_yes(&answer) {
        Ok(())
    } else {
        Err(CliError::Declined(
            "not confirmed; nothing was changed (answer y, or pass --yes to skip the question)"
                .to_owned(),
        ))
    }
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_y_or_yes_confirms() {
        assert!(super::is_yes("y\n"));
        assert!(super::is_yes(" YES \n"));
        assert!(!super::is_yes(""));
        assert!(!super::is_yes("n\n"));
        assert!(!super::is_yes("yes please\n"));
    }
}
