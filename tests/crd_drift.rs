//! The committed CRD files are exactly what `hostrouter crd` prints. Regenerate with `make crds`.

use std::path::Path;

#[test]
fn committed_crds_match_the_generator() {
    let generated = hostrouter::cli::crd_yaml().expect("CRD renders");
    for path in [
        "crds/hostrouter.io_hostrouters.yaml",
        "charts/hostrouter/crds/hostrouter.io_hostrouters.yaml",
    ] {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let committed =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        assert!(
            committed == generated,
            "{path} is stale: run `make crds` and commit the result"
        );
    }
}
