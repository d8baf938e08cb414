//! The selectors `revoke`, `suspend` and `resume` share: one token, or in bulk by subject,
//! family or label.

use token_core::{RevokeSelector, TokenId};

/// The selector the flags name, with what a bulk one covers (for the confirmation prompt);
/// `None` when none is given.
pub(crate) fn chosen(
    id: Option<TokenId>,
    subject: Option<String>,
    family: Option<TokenId>,
    label: Option<(String, String)>,
) -> Option<(RevokeSelector, Option<String>)> {
    if let Some(id) = id {
        Some((RevokeSelector::Token(id), None))
    } else if let Some(subject) = subject {
        let what = format!("every token of subject {subject:?}");
        Some((RevokeSelector::Subject(subject), Some(what)))
    } else if let Some(family) = family {
        let what = format!("every token of family {family}");
        Some((RevokeSelector::Family(family), Some(what)))
    } else {
        label.map(|(key, value)| {
            let what = format!("every token labelled {key}={value}");
            (RevokeSelector::Label { key, value }, Some(what))
        })
    }
}
