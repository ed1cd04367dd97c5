//! Fuzz target: scan arbitrary bytes (and their text form). Nothing may
//! panic, and every match's range lies inside the input with a redacted preview.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for m in keycard_scan::scan_bytes(data) {
        assert!(m.start <= m.end && m.end <= data.len());
        assert!(m.preview.chars().count() <= 5);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for m in keycard_scan::scan_text(text) {
            assert!(text.get(m.start..m.end).is_some());
        }
    }
    let _ = keycard_scan::account_from_key_id(&String::from_utf8_lossy(data));
});
