//! Reading plugin folders: manifest and component as one pair, plain ids.

use super::*;

#[test]
fn a_manifest_and_component_are_read_as_one_pair() {
    // A deploy lands the new manifest after the old component was read: read again.
    let mut reads = 0;
    let pair = read_pair_with(
        |name| {
            reads += 1;
            Ok(match (name, reads) {
                ("plugin.toml", 1) => b"old".to_vec(),
                ("plugin.toml", _) => b"new".to_vec(),
                (_, 2) => b"old wasm".to_vec(),
                _ => b"new wasm".to_vec(),
            })
        },
        || Some(0),
    );
    assert_eq!(pair, Ok((b"new".to_vec(), b"new wasm".to_vec())));
    // The component changing under the read (its stamp moves) is read again too.
    let mut stamps = 0;
    let pair = read_pair_with(
        |name| Ok(name.as_bytes().to_vec()),
        || {
            stamps += 1;
            Some(stamps.min(3))
        },
    );
    assert!(pair.is_ok());
    assert_eq!(stamps, 4, "one unsteady attempt, then a steady one");
    // A writer that never stops is reported, not loaded half-written.
    let mut n = 0;
    let err = read_pair_with(
        |_| {
            n += 1;
            Ok(n.to_string().into_bytes())
        },
        || Some(0),
    )
    .expect_err("never steady");
    assert!(err.contains("kept changing"), "{err}");
}

#[test]
fn ids_are_plain_names() {
    for ok in ["chat", "tools-terse", "frozen-v0-1", "a_b", "9lives"] {
        assert!(valid_id(ok), "{ok}");
    }
    for bad in [
        "",
        "../../x",
        "Chat",
        "-x",
        "a/b",
        "a.b",
        "x y",
        &"a".repeat(65),
    ] {
        assert!(!valid_id(bad), "{bad}");
    }
}
