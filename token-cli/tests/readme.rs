//! Every `tokenctl` command line the README shows parses with the real command line (so the
//! docs cannot drift from the flags).

use clap::Parser as _;
use token_cli::cli::Cli;

/// Splits a shell command line on spaces, keeping "double" and 'single' quoted words whole.
fn words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '"' | '\'') => (quote, in_word) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            (_, c) => (word, in_word) = (word + &c.to_string(), true),
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The `tokenctl ...` commands in the README's `sh` blocks, without comments, pipes,
/// redirections and command substitutions around them.
fn readme_commands() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = line.split("  #").next().unwrap_or(line);
        let Some(at) = code.find("tokenctl ") else {
            continue;
        };
        if code[..at].ends_with("-p ") {
            continue;
        }
        let command = code[at..]
            .split(['|', '>', ')'])
            .next()
            .unwrap_or("")
            .trim();
        commands.push(command.to_owned());
    }
    commands
}

#[test]
fn every_tokenctl_command_in_the_readme_parses() {
    let commands = readme_commands();
    assert!(commands.len() >= 15, "found only {commands:?}");
    for command in &commands {
        if let Err(e) = Cli::try_parse_from(words(command)) {
            panic!("README command `{command}` does not parse:\n{e}");
        }
    }
}
