//! New offline rounds: after a partial loss (the import lost or damaged files, the seed needs
//! repair), an operator ships exactly those files again on disks instead of over the uplink.
//! A round is a seed of its own (disks, import job, deadlines) into its parent's import
//! container; once imported it is `merged` and the parent is verified again.

use crate::domain::model::RepairFile;
use crate::domain::seed::SeedState;

/// The repair states a round takes files from: asked of the source agent and not uploaded, or
/// on an earlier round that ended without being imported.
const SHIPPABLE: [&str; 2] = ["requested", "reshipped"];

/// The job name of round `n` (2 for the first new round) of `parent`: `<parent>-r<n>`, the
/// parent's name shortened as Azure's 24-character limit needs (never ending in '-').
pub fn round_job_name(parent: &str, n: u32) -> String {
    let suffix = format!("-r{n}");
    let keep = parent.len().min(24 - suffix.len());
    let stem = parent[..keep].trim_end_matches('-');
    format!("{stem}{suffix}")
}

/// What a new round is decided on.
#[derive(Debug, Clone)]
pub struct ReshipFacts<'a> {
    pub job: &'a str,
    pub state: SeedState,
    /// The seed is itself a round of this job.
    pub round_of: Option<&'a str>,
    /// A round of the seed that has not ended, with its state.
    pub active_round: Option<(&'a str, SeedState)>,
    /// Every repair row of the seed.
    pub repairs: &'a [RepairFile],
}

/// The files a new round carries, or why there can be none (in words for the operator).
pub fn reship_plan<'a>(f: &ReshipFacts<'a>) -> Result<Vec<&'a RepairFile>, String> {
    if let Some(parent) = f.round_of {
        return Err(format!(
            "seed {} is itself a round of {parent}; what it lost is found when {parent} is verified again: start a new round from {parent}",
            f.job
        ));
    }
    if f.state != SeedState::NeedsRepair {
        let why = match f.state {
            SeedState::Verifying | SeedState::Imported => {
                "its import is being verified; wait for the verification's result"
            }
            SeedState::SeedingVault | SeedState::Seeded => "its import verified whole",
            SeedState::Failed | SeedState::Cancelled | SeedState::Merged => "it has ended",
            _ => "it is not imported yet",
        };
        return Err(format!(
            "seed {} is {}: nothing is lost ({why}). A new offline round carries files an import lost, for a seed that needs repair",
            f.job, f.state
        ));
    }
    if let Some((round, state)) = f.active_round {
        return Err(format!(
            "round {round} of seed {} is under way ({state}); wait for it to be imported, or cancel it (seedctl cancel {round}) before starting another",
            f.job
        ));
    }
    let lost: Vec<&RepairFile> = f.repairs.iter().filter(|r| r.state == "lost").collect();
    if !lost.is_empty() {
        let names: Vec<&str> = lost.iter().take(3).map(|r| r.path.as_str()).collect();
        return Err(format!(
            "{} file(s) of seed {} are lost from the staging location too ({}{}); no round can carry them. Stage a fresh seed",
            lost.len(),
            f.job,
            names.join(", "),
            if lost.len() > 3 { ", …" } else { "" }
        ));
    }
    let ship: Vec<&RepairFile> = f.repairs.iter().filter(|r| SHIPPABLE.contains(&r.state.as_str())).collect();
    if ship.iter().any(|r| r.path == seedship_repo::layout::MANIFEST) {
        return Err(format!(
            "the seed manifest of {} is missing from the import container, so which files are lost is not known yet; \
             the source agent uploads it (source-agent repair), then the verification names the lost files",
            f.job
        ));
    }
    if ship.is_empty() {
        return Err(format!(
            "nothing left to ship for seed {}: the source agent uploaded every file again, and the seed is verified again once all are in",
            f.job
        ));
    }
    Ok(ship)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, state: &str) -> RepairFile {
        RepairFile {
            path: path.into(),
            size: 10,
            sha256: String::new(),
            md5: String::new(),
            state: state.into(),
            detail: String::new(),
            updated_ms: 0,
        }
    }

    fn facts<'a>(state: SeedState, repairs: &'a [RepairFile]) -> ReshipFacts<'a> {
        ReshipFacts { job: "job-a", state, round_of: None, active_round: None, repairs }
    }

    #[test]
    fn round_names_fit_azures_rules() {
        assert_eq!(round_job_name("job-a", 2), "job-a-r2");
        let long = "abcdefghijklmnopqrstuvwx";
        assert_eq!(round_job_name(long, 2), "abcdefghijklmnopqrstu-r2");
        assert_eq!(round_job_name(long, 12).len(), 24);
        // A cut that would end in '-' is trimmed.
        assert_eq!(round_job_name("abcdefghijklmnopqrstu-wx", 2), "abcdefghijklmnopqrstu-r2");
        assert_eq!(round_job_name("abcdefghijklmnopqrst-vwx", 2), "abcdefghijklmnopqrst-r2");
        for n in [2, 9, 10, 99] {
            assert!(crate::domain::validate::job_name(&round_job_name(long, n)).is_ok());
        }
    }

    #[test]
    fn a_round_carries_the_files_asked_for_and_of_ended_rounds() {
        let rows = [row("data/a", "requested"), row("data/b", "uploaded"), row("data/c", "reshipped")];
        let plan = reship_plan(&facts(SeedState::NeedsRepair, &rows)).unwrap();
        let paths: Vec<&str> = plan.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["data/a", "data/c"]);
    }

    #[test]
    fn refusals_say_why() {
        let rows = [row("data/a", "requested")];
        let e = reship_plan(&facts(SeedState::Seeded, &rows)).unwrap_err();
        assert!(e.contains("nothing is lost") && e.contains("verified whole"), "{e}");
        let e = reship_plan(&facts(SeedState::Shipped, &rows)).unwrap_err();
        assert!(e.contains("not imported yet"), "{e}");
        let e =
            reship_plan(&ReshipFacts { round_of: Some("job-0"), ..facts(SeedState::NeedsRepair, &rows) }).unwrap_err();
        assert!(e.contains("itself a round of job-0"), "{e}");
        let e = reship_plan(&ReshipFacts {
            active_round: Some(("job-a-r2", SeedState::Shipped)),
            ..facts(SeedState::NeedsRepair, &rows)
        })
        .unwrap_err();
        assert!(e.contains("round job-a-r2") && e.contains("under way (shipped)"), "{e}");
        let lost = [row("data/a", "requested"), row("data/z", "lost")];
        let e = reship_plan(&facts(SeedState::NeedsRepair, &lost)).unwrap_err();
        assert!(e.contains("lost from the staging location too (data/z)") && e.contains("fresh seed"), "{e}");
        let done = [row("data/a", "uploaded")];
        let e = reship_plan(&facts(SeedState::NeedsRepair, &done)).unwrap_err();
        assert!(e.contains("nothing left to ship"), "{e}");
        let manifest = [row("manifest.json", "requested")];
        let e = reship_plan(&facts(SeedState::NeedsRepair, &manifest)).unwrap_err();
        assert!(e.contains("seed manifest") && e.contains("not known yet"), "{e}");
    }
}
