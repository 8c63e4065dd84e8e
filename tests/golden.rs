//! Golden files: for every case under `tests/golden/<case>/`, `hostrouter render -f router.yaml
//! --cluster cluster.yaml` (default settings) prints exactly `expected.yaml`.
//!
//! Refresh them on purpose with `make golden` (`UPDATE_GOLDEN=1 cargo test --test golden`) and
//! read the diff: a change to `reference/expected.yaml` changes what every existing router gets.

use std::path::{Path, PathBuf};

use hostrouter::offline::render_files;
use hostrouter::render::Settings;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.join("router.yaml").is_file())
        .collect();
    cases.sort();
    cases
}

#[test]
fn rendered_objects_match_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cases = cases();
    assert!(cases.len() >= 4, "golden cases missing: {cases:?}");
    let mut stale = Vec::new();
    for case in cases {
        let rendered = render_files(
            &case.join("router.yaml"),
            Some(&case.join("cluster.yaml")),
            &Settings::default(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        let expected_path = case.join("expected.yaml");
        if update {
            std::fs::write(&expected_path, &rendered).expect("writing a golden file");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != rendered {
            stale.push(case.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "rendered output differs from the golden files of {stale:?}; run `make golden` and review the diff"
    );
}

#[test]
fn rendering_twice_gives_the_same_bytes() {
    for case in cases() {
        let render = || {
            render_files(
                &case.join("router.yaml"),
                Some(&case.join("cluster.yaml")),
                &Settings::default(),
            )
            .expect("renders")
        };
        assert_eq!(render(), render(), "{}", case.display());
    }
}

/// The Proxy spec is encoded straight from its Rust types, not from a `serde_json::Value`: its
/// compressed form holds the plain spec, keys in the types' order (a listener's virtual hosts
/// before its port, so that routers on other ports share compressed pieces; a plain spec is
/// stored with sorted keys).
#[test]
fn a_compressed_proxy_holds_the_plain_spec() {
    use base64::Engine;
    use std::io::Read;
    let docs = |text: &str| -> Vec<serde_json::Value> {
        serde_yaml::Deserializer::from_str(text)
            .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
            .collect()
    };
    let always = Settings {
        compress_proxy_above_bytes: 0,
        ..Settings::default()
    };
    for case in cases() {
        let render = |settings: &Settings| {
            let text = render_files(
                &case.join("router.yaml"),
                Some(&case.join("cluster.yaml")),
                settings,
            )
            .expect("renders");
            docs(&text).into_iter().find(|d| d["kind"] == "Proxy")
        };
        let (Some(plain), Some(compressed)) = (render(&Settings::default()), render(&always))
        else {
            continue;
        };
        let encoded = compressed["spec"]["compressedSpec"]
            .as_str()
            .expect("a compressed spec");
        let zlib = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        let mut bytes = Vec::new();
        flate2::read::ZlibDecoder::new(zlib.as_slice())
            .read_to_end(&mut bytes)
            .expect("zlib");
        let held: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(held, plain["spec"], "{}", case.display());
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.starts_with(r#"{"listeners":[{"httpListener":{"#),
            "{}: {text}",
            case.display()
        );
    }
}
