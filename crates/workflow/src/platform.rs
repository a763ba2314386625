//! Which `runs-on` labels a Linux VM stands for. As in act's harness, `ubuntu-latest`,
//! `self-hosted` and `linux` map to a Linux runner (as do current Ubuntu images, 22.04 and
//! later, and architecture labels); a job whose labels name anything else (`macos-latest`,
//! `windows-latest`, retired images such as `ubuntu-18.04`) is skipped, not failed.

/// Why a job's labels do not fit a Linux VM (`None`: they do).
pub fn unsupported_label(labels: &[String], served: &[String]) -> Option<String> {
    if labels.is_empty() {
        return Some("runs-on names no runner label".to_string());
    }
    labels
        .iter()
        .find(|l| !is_linux_label(l) && !served.contains(l))
        .map(|l| format!("runs-on label '{l}' is not a Linux runner azlin provides"))
}

/// Whether `label` names a Linux runner (`ubuntu-latest`, `self-hosted`, `linux`, …).
pub fn is_linux_label(label: &str) -> bool {
    let l = label.trim().to_ascii_lowercase();
    match l.as_str() {
        "ubuntu-latest" | "self-hosted" | "linux" | "x64" | "arm64" => true,
        _ => l
            .strip_prefix("ubuntu-")
            .and_then(|v| v.split(['.', '-']).next())
            .and_then(|major| major.parse::<u32>().ok())
            .is_some_and(|major| major >= 22),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn linux_labels_run_others_are_skipped() {
        for ok in [
            &["ubuntu-latest"][..],
            &["self-hosted", "ubuntu-latest"],
            &["self-hosted", "linux", "x64"],
            &["ubuntu-24.04"],
            &["ubuntu-22.04"],
            &["ubuntu-24.04-arm"],
        ] {
            assert_eq!(unsupported_label(&labels(ok), &[]), None, "{ok:?}");
        }
        for skipped in [
            &["macos-latest"][..],
            &["ubuntu-18.04"],
            &["ubuntu-16.04"],
            &["ubuntu-20.04"],
            &["windows-latest"],
            &["self-hosted", "macos"],
            &[],
        ] {
            assert!(
                unsupported_label(&labels(skipped), &[]).is_some(),
                "{skipped:?}"
            );
        }
        // A warm pool's custom label is served.
        let gpu = labels(&["self-hosted", "gpu"]);
        assert!(unsupported_label(&gpu, &[]).is_some());
        assert_eq!(unsupported_label(&gpu, &labels(&["gpu"])), None);
    }
}
