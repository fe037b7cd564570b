//! Whether a run went well enough for its exit code to say so: a capacity script trusts
//! `wsload`'s exit status, so connections that failed (a connect or handshake that did
//! not succeed, a connection the server closed before wsload did, a protocol error) and
//! messages lost (sequence gaps) fail the run, unless they stay within `--tolerate`.

use crate::report::Report;

/// What went wrong beyond the tolerated share, in words for stderr.
#[derive(Debug, PartialEq)]
pub(crate) struct Shortfall(pub(crate) String);

/// Checks `report` against the tolerated share (0 = nothing may fail or be lost).
pub(crate) fn check(report: &Report, tolerate: f64) -> Result<(), Shortfall> {
    let mut problems = Vec::new();
    let failed = report.failed + report.closed_by_server + report.protocol_errors;
    let attempts = report.connected + report.failed;
    if over(failed, attempts, tolerate) {
        problems.push(format!(
            "{failed} of {attempts} connections failed ({} connect/handshake, {} closed by \
             the server, {} protocol errors)",
            report.failed, report.closed_by_server, report.protocol_errors
        ));
    }
    let expected = report.messages + report.seq_gaps;
    if over(report.seq_gaps, expected, tolerate) {
        problems.push(format!(
            "{} of {expected} messages lost (sequence gaps)",
            report.seq_gaps
        ));
    }
    if let Some(resume) = &report.resume {
        // A resuming client must get every message once: duplicates and positions that
        // could not be recovered fail the run like gaps do.
        if over(report.seq_dups, expected, tolerate) {
            problems.push(format!(
                "{} of {expected} messages duplicated",
                report.seq_dups
            ));
        }
        if over(resume.not_recovered, resume.server_closes, tolerate) {
            problems.push(format!(
                "{} of {} resumptions not recovered",
                resume.not_recovered, resume.server_closes
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Shortfall(format!(
            "{} (tolerated: {}%)",
            problems.join("; "),
            tolerate * 100.0
        )))
    }
}

/// Whether `bad` of `total` is more than the tolerated share.
fn over(bad: u64, total: u64, tolerate: f64) -> bool {
    bad > 0 && bad as f64 > tolerate * total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(connected: u64, failed: u64, messages: u64, gaps: u64) -> Report {
        Report {
            connected,
            failed,
            messages,
            seq_gaps: gaps,
            ..Report::default()
        }
    }

    #[test]
    fn a_clean_run_passes() {
        assert_eq!(check(&report(100, 0, 1000, 0), 0.0), Ok(()));
    }

    #[test]
    fn any_failure_or_loss_fails_without_tolerance() {
        assert!(check(&report(99, 1, 1000, 0), 0.0).is_err());
        assert!(check(&report(100, 0, 999, 1), 0.0).is_err());
        let closed = Report {
            closed_by_server: 1,
            ..report(100, 0, 0, 0)
        };
        let err = check(&closed, 0.0).expect_err("a server close fails the run");
        assert!(err.0.contains("1 closed by the server"), "{}", err.0);
    }

    #[test]
    fn a_resuming_run_also_fails_on_duplicates_and_unrecovered_positions() {
        let mut r = report(100, 0, 1000, 0);
        r.seq_dups = 1;
        assert_eq!(
            check(&r, 0.0),
            Ok(()),
            "duplicates alone are not checked without --resume"
        );
        r.resume = Some(crate::report::ResumeFigures {
            server_closes: 100,
            ..Default::default()
        });
        let err = check(&r, 0.0).expect_err("a duplicate fails a resuming run");
        assert!(err.0.contains("1 of 1000 messages duplicated"), "{}", err.0);
        r.seq_dups = 0;
        r.resume.as_mut().unwrap().not_recovered = 2;
        let err = check(&r, 0.0).expect_err("an unrecovered resumption fails");
        assert!(
            err.0.contains("2 of 100 resumptions not recovered"),
            "{}",
            err.0
        );
    }

    #[test]
    fn the_tolerated_share_is_allowed_and_no_more() {
        assert_eq!(check(&report(99, 1, 990, 10), 0.01), Ok(()));
        assert!(check(&report(98, 2, 1000, 0), 0.01).is_err());
        assert!(check(&report(100, 0, 980, 20), 0.01).is_err());
    }
}
