//! `packages.txt`: system (apt) packages an app declares. infsh never installs
//! them (that needs root and changes the machine); it reports them, and which of
//! them `dpkg-query` says are not installed, so the CLI can tell the user.

use std::path::Path;
use std::process::{Command, Stdio};

/// The apt packages an app declares, and those missing on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AptPackages {
    /// Package names from `packages.txt`, in file order, without duplicates.
    pub declared: Vec<String>,
    /// Declared packages that `dpkg-query` reports as not installed. Empty when
    /// `dpkg-query` is not available (not a Debian-like system): unknown, not "all present".
    pub missing: Vec<String>,
}

/// Reads `<app_dir>/packages.txt` (`#` comments, blank lines and surrounding
/// whitespace ignored; several names on one line allowed; a version pin such as
/// `ffmpeg=7:4.4` counts as its name) and checks each package with `dpkg-query`.
pub fn apt_packages(app_dir: &Path) -> AptPackages {
    let Ok(text) = std::fs::read_to_string(app_dir.join("packages.txt")) else {
        return AptPackages::default();
    };
    let declared = parse_packages(&text);
    let missing = match which::which("dpkg-query") {
        Ok(dpkg) => declared
            .iter()
            .filter(|p| !dpkg_installed(&dpkg, p))
            .cloned()
            .collect(),
        Err(_) => Vec::new(),
    };
    AptPackages { declared, missing }
}

/// The package names in a `packages.txt` text.
pub fn parse_packages(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        for word in line.split_whitespace() {
            let name = word.split('=').next().unwrap_or(word).to_string();
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

fn dpkg_installed(dpkg: &Path, package: &str) -> bool {
    Command::new(dpkg)
        .args(["-W", "-f=${Status}", package])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_blanks_and_pins() {
        let text = "# system deps\nffmpeg\n\n  libgl1   # for opencv\nlibsm6 libxext6\nffmpeg\ntesseract-ocr=4.1.1-2\n";
        assert_eq!(
            parse_packages(text),
            vec!["ffmpeg", "libgl1", "libsm6", "libxext6", "tesseract-ocr"]
        );
    }

    #[test]
    fn no_file_means_nothing_declared() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(apt_packages(dir.path()), AptPackages::default());
    }

    #[test]
    fn reports_missing_packages_when_dpkg_is_available() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("packages.txt"),
            "infsh-surely-not-a-real-package-xyz\n",
        )
        .unwrap();
        let apt = apt_packages(dir.path());
        assert_eq!(apt.declared, vec!["infsh-surely-not-a-real-package-xyz"]);
        if which::which("dpkg-query").is_ok() {
            assert_eq!(apt.missing, apt.declared);
        } else {
            assert!(apt.missing.is_empty());
        }
    }
}
