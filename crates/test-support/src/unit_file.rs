//! Reading systemd unit files (the deployment tests read `deploy/systemd/`).

/// The values of `key=` lines in the `[Service]` section of a unit's
/// text, in order (comments and other sections skipped).
pub fn service_values(unit: &str, key: &str) -> Vec<String> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == key {
                out.push(v.trim().to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_service_section_counts() {
        let unit = "[Unit]\nExecStart=no\n[Service]\n# ExecStart=comment\nExecStart=/bin/a %i\nUser = x\n[Install]\nExecStart=no\n";
        assert_eq!(service_values(unit, "ExecStart"), ["/bin/a %i"]);
        assert_eq!(service_values(unit, "User"), ["x"]);
        assert!(service_values(unit, "Group").is_empty());
    }
}
