//! `Requirement::parse` and `AnyOf::parse`: never panic; parse -> Display -> parse gives back
//! the same value; every accepted scope is concrete and listed once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_core::{AnyOf, Requirement, Scope};

fn check_scopes(scopes: &[Scope]) {
    for (i, scope) in scopes.iter().enumerate() {
        assert!(scope.is_concrete(), "a requirement accepted {scope}");
        assert!(!scopes[..i].contains(scope), "duplicate {scope}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let requirement = Requirement::parse(input);
    if let Ok(requirement) = &requirement {
        check_scopes(requirement.scopes());
        let text = requirement.to_string();
        let again = Requirement::parse(&text).expect("a displayed requirement must parse");
        assert_eq!(&again, requirement, "requirement round trip");
        assert_eq!(again.to_string(), text);
    }
    let any = AnyOf::parse(input);
    if let Ok(any) = &any {
        check_scopes(any.scopes());
        assert!(!any.scopes().is_empty());
        let text = any.to_string();
        let again = AnyOf::parse(&text).expect("a displayed any-of must parse");
        assert_eq!(&again, any, "any-of round trip");
        assert_eq!(again.to_string(), text);
    }
    // The two agree on which inputs are well formed (AnyOf refuses only the empty list).
    match (&requirement, &any) {
        (Ok(r), Ok(a)) => assert_eq!(r.scopes(), a.scopes()),
        (Ok(r), Err(_)) => assert!(r.scopes().is_empty()),
        (Err(_), Ok(_)) => panic!("AnyOf accepted what Requirement refused"),
        (Err(_), Err(_)) => {}
    }
});
