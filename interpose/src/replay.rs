//! The replay line a failing `NETPOLL_SIM` test prints: the one command that reruns that test
//! alone, in that test binary alone.
//!
//! libtest names each test's thread with the test's full path (`tests::foo`), which is what
//! `--exact` matches. The test binary is named by cargo `<crate name>-<16 hex digits>` in
//! `target/<profile>/deps`; its crate name says which target built it when the package's
//! layout leaves one reading: `tests/<name>.rs` (or `tests/<name>/main.rs`) gives
//! `--test <name>`, the package's `src/lib.rs` (and no `src/main.rs`) gives `--lib`. Anything
//! else (a binary not built by cargo, a target with a custom path, a name two targets share)
//! gives the line without a target selector, which reruns every test of that name.

use std::path::{Path, PathBuf};

/// What selects the test binary in `cargo test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `--test <name>`: an integration test.
    Test(String),
    /// `--lib`: the package's library unit tests.
    Lib,
    /// Nothing known: every target.
    Unknown,
}

/// The crate name cargo built `exe` from: its file name without cargo's `-<16 hex>` suffix, for
/// a binary in a `deps` directory; `None` for any other name.
pub(crate) fn crate_name(exe: &Path) -> Option<&str> {
    if exe.parent()?.file_name()? != "deps" {
        return None;
    }
    let file = exe.file_name()?.to_str()?;
    let (name, hash) = file.rsplit_once('-')?;
    let is_hash = hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    (is_hash && !name.is_empty()).then_some(name)
}

/// Which target of the package at `root` (named `package`) built the binary of crate `name`.
/// The file checks are `stat`s only (no descriptor is opened or closed: this runs on a thread
/// whose descriptor calls go to its simulated kernel).
pub(crate) fn target(name: &str, root: &Path, package: Option<&str>) -> Target {
    // A test target's crate name is its name with `-` as `_`; try the name as it is and with
    // every `_` as `-`.
    let dashed = name.replace('_', "-");
    let mut tests = vec![name];
    if dashed != name {
        tests.push(&dashed);
    }
    tests.retain(|n| is_test_file(root, n));
    let is_lib = package.is_some_and(|p| p.replace('-', "_") == name)
        && root.join("src/lib.rs").is_file()
        && !root.join("src/main.rs").exists();
    match (tests.as_slice(), is_lib) {
        ([t], false) if !is_bin_file(root, t) => Target::Test((*t).to_owned()),
        ([], true) => Target::Lib,
        _ => Target::Unknown,
    }
}

fn is_test_file(root: &Path, name: &str) -> bool {
    let tests = root.join("tests");
    tests.join(format!("{name}.rs")).is_file() || tests.join(name).join("main.rs").is_file()
}

fn is_bin_file(root: &Path, name: &str) -> bool {
    let bin = root.join("src/bin");
    bin.join(format!("{name}.rs")).exists() || bin.join(name).join("main.rs").exists()
}

/// This process's target: from `/proc/self/exe` (or `argv[0]`), and the package root cargo
/// runs tests in (`CARGO_MANIFEST_DIR`, or the working directory).
pub(crate) fn this_target() -> Target {
    let exe = std::env::current_exe()
        .ok()
        .or_else(|| std::env::args_os().next().map(PathBuf::from));
    let Some(name) = exe.as_deref().and_then(crate_name) else {
        return Target::Unknown;
    };
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok());
    let Some(root) = root else {
        return Target::Unknown;
    };
    let package = std::env::var("CARGO_PKG_NAME").ok();
    target(name, &root, package.as_deref())
}

/// The command that reruns test `test` (its full path) of `target` with `var` set to `value`
/// (a seed, or `threads:<seed>`).
pub(crate) fn line(var: &str, value: &str, target: &Target, test: &str) -> String {
    let select = match target {
        Target::Test(t) => format!(" --test {t}"),
        Target::Lib => " --lib".to_owned(),
        Target::Unknown => String::new(),
    };
    format!("{var}={value} cargo test{select} -- --exact {test}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stripped_from_a_deps_binary() {
        let p = Path::new("/w/target/debug/deps/tcp_split-0123456789abcdef");
        assert_eq!(crate_name(p), Some("tcp_split"));
        let p = Path::new("target/release/deps/netpoll_interpose-FEDCBA9876543210");
        assert_eq!(crate_name(p), Some("netpoll_interpose"));
    }

    #[test]
    fn a_dash_in_the_name_stays() {
        let p = Path::new("/t/debug/deps/tcp-foo-0123456789abcdef");
        assert_eq!(crate_name(p), Some("tcp-foo"));
        let p = Path::new("/t/debug/deps/a-b-c-00000000000000ff");
        assert_eq!(crate_name(p), Some("a-b-c"));
    }

    #[test]
    fn names_cargo_did_not_make_are_not_parsed() {
        for p in [
            "/usr/bin/tokio-tests",
            "/t/debug/deps/tcp_split",
            "/t/debug/deps/tcp_split-0123456789abcde",
            "/t/debug/deps/tcp_split-0123456789abcdef0",
            "/t/debug/deps/tcp_split-0123456789abcdeg",
            "/t/debug/deps/-0123456789abcdef",
            "/t/debug/tcp_split-0123456789abcdef",
            "tcp_split-0123456789abcdef",
            "/",
            "",
        ] {
            assert_eq!(crate_name(Path::new(p)), None, "{p}");
        }
    }

    /// A package layout in a scratch directory under the temporary directory, removed afterwards.
    struct Layout(PathBuf);

    impl Layout {
        fn new(tag: &str, files: &[&str]) -> Layout {
            let root = std::env::temp_dir().join(format!(
                "netpoll-interpose-replay-{tag}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&root);
            for f in files {
                let p = root.join(f);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, "").unwrap();
            }
            std::fs::create_dir_all(&root).unwrap();
            Layout(root)
        }
    }

    impl Drop for Layout {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_layout_names_the_target() {
        let l = Layout::new(
            "targets",
            &[
                "src/lib.rs",
                "tests/tcp_split.rs",
                "tests/tcp-foo.rs",
                "tests/suite/main.rs",
                "tests/both.rs",
                "src/bin/both.rs",
            ],
        );
        let t = |name| target(name, &l.0, Some("my-pkg"));
        assert_eq!(t("tcp_split"), Target::Test("tcp_split".into()));
        assert_eq!(t("tcp_foo"), Target::Test("tcp-foo".into()));
        assert_eq!(t("suite"), Target::Test("suite".into()));
        assert_eq!(t("my_pkg"), Target::Lib);
        assert_eq!(t("both"), Target::Unknown, "a bin of the same name");
        assert_eq!(t("nothing"), Target::Unknown);
        assert_eq!(target("my_pkg", &l.0, None), Target::Unknown);
    }

    #[test]
    fn a_lib_beside_a_main_is_not_told_apart() {
        let l = Layout::new("libmain", &["src/lib.rs", "src/main.rs"]);
        assert_eq!(target("my_pkg", &l.0, Some("my-pkg")), Target::Unknown);
    }

    #[test]
    fn the_line_selects_the_target_and_the_exact_path() {
        let test = Target::Test("tcp_split".into());
        assert_eq!(
            line("NETPOLL_SIM", "1", &test, "split"),
            "NETPOLL_SIM=1 cargo test --test tcp_split -- --exact split"
        );
        assert_eq!(
            line("NETPOLL_SIM", "7", &Target::Lib, "tests::foo"),
            "NETPOLL_SIM=7 cargo test --lib -- --exact tests::foo"
        );
        assert_eq!(
            line("NETPOLL_SIM", "threads:7", &Target::Unknown, "split"),
            "NETPOLL_SIM=threads:7 cargo test -- --exact split"
        );
    }
}
