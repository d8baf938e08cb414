//! `NetworkAllowlist::parse` and `Metadata::from_json`: never panic; Display / to_string round
//! trip to an equal value, and the displayed form is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_core::{Metadata, NetworkAllowlist};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(list) = NetworkAllowlist::parse(input) {
        let text = list.to_string();
        let again = NetworkAllowlist::parse(&text)
            .unwrap_or_else(|e| panic!("displayed allowlist {text:?} does not parse: {e}"));
        assert_eq!(again, list, "allowlist round trip via {text:?}");
        assert_eq!(again.to_string(), text);
        assert!(list.covers(&list));
        assert_eq!(list.intersection(&list).as_ref(), Some(&list));
        let networks: Vec<String> = list.networks().collect();
        assert_eq!(
            NetworkAllowlist::try_from(networks).ok().as_ref(),
            Some(&list)
        );
    }
    if let Ok(metadata) = Metadata::from_json(input) {
        let text = metadata.to_string();
        let again = Metadata::from_json(&text)
            .unwrap_or_else(|e| panic!("displayed metadata does not parse: {e}"));
        assert_eq!(again, metadata, "metadata round trip");
        assert_eq!(again.to_string(), text);
        // Through serde as well (what a JSON export writes).
        let json = serde_json::to_string(&metadata).expect("metadata serializes");
        let back: Metadata = serde_json::from_str(&json).expect("serialized metadata parses");
        assert_eq!(back, metadata);
    }
});
