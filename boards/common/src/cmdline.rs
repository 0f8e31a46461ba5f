//! `key=value` options on the boot command line (PVH cmdline / `/chosen/bootargs`).
//!
//! The xtask runner passes `iommu.profile=NAME` and, for the harness
//! self-test, `iommu.selftest=fail|panic|hang`.

/// Value of `key=value` in a whitespace-separated command line; `Some("")` for a bare `key`.
pub fn get<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline.split_ascii_whitespace().find_map(|word| {
        let (k, v) = word.split_once('=').unwrap_or((word, ""));
        (k == key).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::get;

    #[test]
    fn finds_values_and_bare_keys() {
        let c = "console=x iommu.profile=q35-flts  quiet iommu.selftest=panic";
        assert_eq!(get(c, "iommu.profile"), Some("q35-flts"));
        assert_eq!(get(c, "iommu.selftest"), Some("panic"));
        assert_eq!(get(c, "quiet"), Some(""));
        assert_eq!(get(c, "iommu"), None);
        assert_eq!(get("", "x"), None);
    }
}
