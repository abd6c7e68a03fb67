//! What a measurement ran on: the CPU model and the thread count, named beside every timing and in every
//! run record, since speed ratios (and, across instruction sets, the last bits of a result) depend on them.

/// The CPU model as the OS names it (Linux: `model name` of `/proc/cpuinfo`, e.g. "AMD EPYC"); otherwise the
/// architecture (e.g. "aarch64").
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| model_name(&text))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The first `model name` line of a `/proc/cpuinfo` text, whitespace collapsed.
fn model_name(cpuinfo: &str) -> Option<String> {
    let line = cpuinfo.lines().find(|l| l.split(':').next().map(str::trim) == Some("model name"))?;
    let name = line.split_once(':')?.1.split_whitespace().collect::<Vec<_>>().join(" ");
    (!name.is_empty()).then_some(name)
}

/// "CPU, N threads": the CPU model and the size of the rayon pool the CPU kernels run on.
pub fn describe() -> String {
    let n = rayon::current_num_threads();
    format!("{}, {n} thread{}", cpu_model(), if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_model_name() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t:   AMD  EPYC\nprocessor\t: 1\n\
                    model name\t: other\n";
        assert_eq!(model_name(text).as_deref(), Some("AMD EPYC"));
        assert_eq!(model_name("processor\t: 0\nmodel name\t:  \n"), None);
        assert_eq!(model_name("Processor\t: AArch64\n"), None);
        assert!(!cpu_model().is_empty());
        let n = rayon::current_num_threads();
        assert!(describe().starts_with(&cpu_model()) && describe().contains(&format!(", {n} thread")));
    }
}
