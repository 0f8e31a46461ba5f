//! `cargo xtask setup`: make sure the bare-metal targets and QEMU >= 10.0 are here.
//!
//! On Debian as root it installs what is missing; elsewhere it prints the
//! exact commands and fails.

use std::path::Path;
use std::process::Command;

use crate::{Result, fail, sh};

pub const TARGETS: &[&str] = &["x86_64-unknown-none", "aarch64-unknown-none"];
const QEMUS: &[&str] = &["qemu-system-x86_64", "qemu-system-aarch64"];
const QEMU_MIN: (u32, u32) = (10, 0);

/// Which Rust toolchain builds the boards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup with the two targets' prebuilt core.
    Rustup,
    /// Debian's rustc-web/cargo-web with `-Zbuild-std` (used when rustup cannot add targets).
    DebianWeb,
}

fn marker() -> std::path::PathBuf {
    crate::target_dir().join("xtask-toolchain")
}

/// The toolchain recorded by the last setup (rustup unless the fallback was
/// needed); `IOMMU_XTASK_TOOLCHAIN=debian-web|rustup` overrides it.
pub fn toolchain() -> Toolchain {
    match std::env::var("IOMMU_XTASK_TOOLCHAIN").as_deref() {
        Ok("debian-web") => return Toolchain::DebianWeb,
        Ok("rustup") => return Toolchain::Rustup,
        _ => {}
    }
    match std::fs::read_to_string(marker()) {
        Ok(s) if s.trim() == "debian-web" => Toolchain::DebianWeb,
        _ => Toolchain::Rustup,
    }
}

fn installed_targets() -> Option<Vec<String>> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    })
}

fn targets_missing() -> Vec<&'static str> {
    let have = installed_targets().unwrap_or_default();
    TARGETS
        .iter()
        .copied()
        .filter(|t| !have.iter().any(|h| h == t))
        .collect()
}

/// `QEMU emulator version 10.0.2 (...)` → (10, 0).
pub fn parse_qemu_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let mut it = rest.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn qemu_ok(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| parse_qemu_version(&String::from_utf8_lossy(&o.stdout)))
        .is_some_and(|v| v >= QEMU_MIN)
}

fn qemu_missing() -> Vec<&'static str> {
    QEMUS.iter().copied().filter(|q| !qemu_ok(q)).collect()
}

/// Whether everything `run`/`test` need is present.
pub fn ready() -> bool {
    (toolchain() == Toolchain::DebianWeb || targets_missing().is_empty())
        && qemu_missing().is_empty()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn os_release(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
    })
}

/// The Debian mirror already configured (deb822 or one-line sources).
pub fn debian_mirror(deb822: &str, one_line: &str) -> Option<String> {
    for stanza in deb822.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .map(|v| v.trim().to_string())
                    .filter(|_| !l.starts_with('#'))
            })
        };
        let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else {
            continue;
        };
        if suites.split_whitespace().any(|s| !s.contains("security")) {
            if let Some(u) = uris.split_whitespace().next() {
                return Some(u.to_string());
            }
        }
    }
    one_line.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("deb")).then_some(())?;
        let mut uri = w.next()?;
        if uri.starts_with('[') {
            uri = w.find(|x| x.contains("://"))?;
        }
        let suite = w.next()?;
        (!suite.contains("security")).then(|| uri.to_string())
    })
}

fn install_qemu() -> Result<()> {
    let codename = os_release("VERSION_CODENAME").unwrap_or_default();
    let debian = Path::new("/etc/debian_version").exists();
    let backports = codename == "bookworm";
    let mirror = debian_mirror(
        &std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default(),
        &std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default(),
    )
    .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    let source = format!(
        "Types: deb\nURIs: {mirror}\nSuites: {codename}-backports\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
    let install: Vec<&str> = if backports {
        vec![
            "apt-get",
            "install",
            "-y",
            "-t",
            "bookworm-backports",
            "qemu-system-x86",
            "qemu-system-arm",
        ]
    } else {
        vec![
            "apt-get",
            "install",
            "-y",
            "qemu-system-x86",
            "qemu-system-arm",
        ]
    };
    if !(debian && is_root()) {
        eprintln!(
            "QEMU >= {}.{} is needed (qemu-system-x86_64, qemu-system-aarch64). On Debian bookworm, as root:",
            QEMU_MIN.0, QEMU_MIN.1
        );
        eprintln!(
            "  cat > /etc/apt/sources.list.d/bookworm-backports.sources <<'EOF'\n{source}EOF"
        );
        eprintln!("  apt-get update");
        eprintln!("  {}", install.join(" "));
        return fail("QEMU missing and this is not Debian as root: run the commands above");
    }
    if backports {
        let path = "/etc/apt/sources.list.d/bookworm-backports.sources";
        if !Path::new(path).exists() {
            println!("setup: adding {path} ({mirror})");
            std::fs::write(path, source).map_err(|e| format!("writing {path}: {e}"))?;
        }
    }
    sh(Command::new("apt-get").arg("update"))?;
    sh(Command::new(install[0])
        .args(&install[1..])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    let still = qemu_missing();
    if !still.is_empty() {
        return fail(format!(
            "after installing, still no QEMU >= 10.0: {still:?}"
        ));
    }
    Ok(())
}

fn install_targets(missing: &[&str]) -> Result<()> {
    println!("setup: rustup target add {}", missing.join(" "));
    let ok = Command::new("rustup")
        .args(["target", "add"])
        .args(missing)
        .status()
        .is_ok_and(|s| s.success());
    if ok && targets_missing().is_empty() {
        let _ = std::fs::remove_file(marker());
        return Ok(());
    }
    // Fallback: Debian's toolchain builds core from source.
    eprintln!(
        "setup: rustup could not add the targets; falling back to Debian's rustc-web with -Zbuild-std"
    );
    if !(Path::new("/etc/debian_version").exists() && is_root()) {
        return fail(
            "no rustup targets and not Debian as root: run `rustup target add x86_64-unknown-none aarch64-unknown-none`, \
             or `apt-get install rustc-web cargo-web rust-web-src lld-22`",
        );
    }
    sh(Command::new("apt-get").arg("update"))?;
    sh(Command::new("apt-get")
        .args([
            "install",
            "-y",
            "rustc-web",
            "cargo-web",
            "rust-web-src",
            "lld-22",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    std::fs::create_dir_all(crate::target_dir()).map_err(|e| e.to_string())?;
    std::fs::write(marker(), "debian-web\n").map_err(|e| e.to_string())?;
    Ok(())
}

/// Install whatever is missing.
pub fn setup() -> Result<()> {
    let missing = targets_missing();
    if !missing.is_empty() && toolchain() == Toolchain::Rustup {
        install_targets(&missing)?;
    }
    if !qemu_missing().is_empty() {
        install_qemu()?;
    }
    for q in QEMUS {
        let v = Command::new(q)
            .arg("--version")
            .output()
            .map_err(|e| format!("{q}: {e}"))?;
        let line = String::from_utf8_lossy(&v.stdout);
        println!("setup: {}", line.lines().next().unwrap_or(q));
    }
    println!(
        "setup: toolchain {:?}, targets {}",
        toolchain(),
        TARGETS.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_versions() {
        assert_eq!(
            parse_qemu_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)\nCopyright"),
            Some((10, 0))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.15"),
            Some((7, 2))
        );
        assert_eq!(parse_qemu_version("garbage"), None);
        assert!(Some((7, 2)) < Some(QEMU_MIN));
    }

    #[test]
    fn mirror_from_deb822_skips_security() {
        let deb822 = "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n\
                      Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n";
        assert_eq!(
            debian_mirror(deb822, ""),
            Some("http://mirror.example/debian".into())
        );
    }

    #[test]
    fn mirror_from_one_line_sources() {
        let one = "# c\ndeb [arch=amd64] http://m.example/debian bookworm main\n";
        assert_eq!(
            debian_mirror("", one),
            Some("http://m.example/debian".into())
        );
        assert_eq!(debian_mirror("", ""), None);
    }
}
