//! Field rules for everything a caller sends. Each check names the field it refuses.

use crate::error::Error;

type R = Result<(), Error>;

fn err(field: &str, reason: impl Into<String>) -> Error {
    Error::invalid(field, reason)
}

fn chars(field: &str, v: &str, min: usize, max: usize, ok: impl Fn(char) -> bool, rule: &str) -> R {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(err(field, format!("{rule}; got {n} characters")));
    }
    if let Some(c) = v.chars().find(|c| !ok(*c)) {
        return Err(err(field, format!("{rule}; {c:?} is not allowed")));
    }
    Ok(())
}

/// 1-128 printable ASCII characters.
pub fn request_id(v: &str) -> R {
    chars("request_id", v, 1, 128, |c| c.is_ascii_graphic(), "use 1-128 printable ASCII characters")
}

/// An Azure Data Box job name that the API and the portal both take: 3-24 letters, digits and
/// '-', a letter or digit first and last.
pub fn job_name(v: &str) -> R {
    let rule = "use 3-24 letters, digits or '-', starting and ending with a letter or digit";
    chars("job_name", v, 3, 24, |c| c.is_ascii_alphanumeric() || c == '-', rule)?;
    if !seedship_azure::databox::paths::valid_job_name(v) {
        return Err(err("job_name", format!("{rule}; got {v:?}")));
    }
    Ok(())
}

/// Azure storage account name: 3-24 lowercase letters and digits.
pub fn storage_account(v: &str) -> R {
    chars(
        "storage_account",
        v,
        3,
        24,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        "use 3-24 lowercase letters and digits",
    )
}

/// Blob container name: 3-63 lowercase letters, digits and single inner '-'.
pub fn container(v: &str) -> R {
    chars(
        "container",
        v,
        3,
        63,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        "use 3-63 lowercase letters, digits and '-'",
    )?;
    if v.starts_with('-') || v.ends_with('-') || v.contains("--") {
        return Err(err("container", "'-' may not start or end the name or appear twice in a row"));
    }
    Ok(())
}

/// A GUID such as `00000000-0000-0000-0000-000000000000`.
pub fn subscription_id(v: &str) -> R {
    let groups: Vec<&str> = v.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups.iter().zip(lens).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(err("subscription_id", format!("expected a GUID like 8-4-4-4-12 hex digits, got {v:?}")))
    }
}

/// Azure location name, e.g. `westeurope`: 2-64 lowercase letters and digits.
pub fn location(v: &str) -> R {
    chars(
        "location",
        v,
        2,
        64,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        "use an Azure location name such as westeurope",
    )
}

/// Path or share as a copy station sees it: 1-1024 characters, no control characters.
pub fn staging_location(v: &str) -> R {
    chars("staging_location", v, 1, 1024, |c| !c.is_control(), "use 1-1024 characters without control characters")
}

/// Lowercase hex of `len` bytes.
/// The largest seed the coordinator records: 1 EiB (sizes are stored as signed 64-bit).
pub const MAX_SEED_BYTES: u64 = 1 << 60;
/// The most files one seed may have.
pub const MAX_SEED_FILES: u64 = 1 << 32;
/// The largest byte size or offset of anything else (a drive, progress): 2^62.
pub const MAX_BYTES: u64 = 1 << 62;

/// A size or count from 1 to `max`.
pub fn count(field: &str, v: u64, max: u64) -> R {
    if v == 0 {
        return Err(err(field, "must be above 0"));
    }
    if v > max {
        return Err(err(field, format!("{v} is above the largest allowed, {max}")));
    }
    Ok(())
}

/// A size or offset from 0 to [`MAX_BYTES`].
pub fn bytes(field: &str, v: u64) -> R {
    if v > MAX_BYTES {
        return Err(err(field, format!("{v} is above the largest allowed, {MAX_BYTES}")));
    }
    Ok(())
}

pub fn hex_digest(field: &str, v: &str, bytes: usize) -> R {
    if v.len() != bytes * 2 || !v.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        return Err(err(field, format!("expected {} lowercase hex characters, got {v:?}", bytes * 2)));
    }
    Ok(())
}

/// A site, station or other label: 1-63 of `[a-z0-9.-]`.
pub fn label(field: &str, v: &str) -> R {
    seedship_proto::identity::validate_label("name", v).map_err(|_| {
        err(
            field,
            format!("use 1-63 lowercase letters, digits, '-' or '.', starting with a letter or digit; got {v:?}"),
        )
    })
}

/// Short free text: at most `max` characters, no control characters.
pub fn text(field: &str, v: &str, max: usize) -> R {
    chars(field, v, 0, max, |c| !c.is_control(), &format!("use at most {max} characters without control characters"))
}

/// Drive id: 1-64 of letters, digits, '-', '_' and '.'.
pub fn drive_id(v: &str) -> R {
    chars(
        "drive.drive_id",
        v,
        1,
        64,
        |c| c.is_ascii_alphanumeric() || "-_.".contains(c),
        "use 1-64 letters, digits, '-', '_' or '.'",
    )
}

/// Hex of any case, `len` characters.
pub fn hex_any_case(field: &str, v: &str, min: usize, max: usize) -> R {
    chars(field, v, min, max, |c| c.is_ascii_hexdigit(), &format!("use {min}-{max} hex characters"))
}

/// A BitLocker recovery password: 8 groups of 6 digits joined by '-', each group a multiple
/// of 11 below 720896 (BitLocker's own checks). The error never repeats the value.
pub fn recovery_password(v: &str) -> R {
    seedship_disk::key::RecoveryPassword::parse(v)
        .map(|_| ())
        .map_err(|e| err("drive.recovery_password", e.to_string()))
}

/// Tracking number: 1-64 letters, digits and '-'.
pub fn tracking_number(v: &str) -> R {
    chars("tracking_number", v, 1, 64, |c| c.is_ascii_alphanumeric() || c == '-', "use 1-64 letters, digits and '-'")
}

/// The carriers whose tracking numbers seedship knows, with the formats they use.
pub const CARRIERS: &[(&str, &str)] = &[
    ("FedEx", "12, 15, 20 or 22 digits"),
    ("UPS", "1Z followed by 16 letters or digits"),
    ("DHL", "10 digits, or JD/JJD followed by 16-20 digits"),
    ("TNT", "9 digits"),
    ("USPS", "20-22 digits, or 2 letters, 9 digits, 2 letters"),
    ("BlueDart", "11 digits"),
];

fn tracking_fits(carrier: &str, t: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let upper = t.to_ascii_uppercase();
    match carrier {
        "FedEx" => digits(t) && matches!(t.len(), 12 | 15 | 20 | 22),
        "UPS" => upper.len() == 18 && upper.starts_with("1Z") && upper[2..].bytes().all(|b| b.is_ascii_alphanumeric()),
        "DHL" => {
            (digits(t) && t.len() == 10)
                || ["JJD", "JD"].iter().any(|p| {
                    upper.starts_with(p) && digits(&upper[p.len()..]) && (16..=20).contains(&(upper.len() - p.len()))
                })
        }
        "TNT" => digits(t) && t.len() == 9,
        "USPS" => {
            (digits(t) && (20..=22).contains(&t.len()))
                || (upper.len() == 13
                    && upper[..2].bytes().all(|b| b.is_ascii_alphabetic())
                    && digits(&upper[2..11])
                    && upper[11..].bytes().all(|b| b.is_ascii_alphabetic()))
        }
        "BlueDart" => digits(t) && t.len() == 11,
        _ => false,
    }
}

/// Checks the carrier and that the tracking number has that carrier's format; returns the
/// carrier's canonical name. Several jobs in one box use the same number with the suffixes
/// `-1`, `-2`, … (Azure's convention), which are allowed.
pub fn carrier_tracking(carrier: &str, tracking: &str) -> Result<&'static str, Error> {
    tracking_number(tracking)?;
    let known = || CARRIERS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
    let canon = CARRIERS
        .iter()
        .map(|(c, _)| *c)
        .find(|c| c.eq_ignore_ascii_case(carrier.trim()) || c.eq_ignore_ascii_case(&carrier.trim().replace(' ', "")))
        .ok_or_else(|| {
            err("carrier", format!("{carrier:?} is not a carrier seedship knows; use one of {}", known()))
        })?;
    let base = match tracking.rsplit_once('-') {
        Some((b, n)) if !n.is_empty() && n.len() <= 2 && n.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => tracking,
    };
    if !tracking_fits(canon, base) {
        let format = CARRIERS.iter().find(|(c, _)| *c == canon).map(|(_, f)| *f).unwrap_or("");
        return Err(err(
            "tracking_number",
            format!(
                "{tracking:?} is not a {canon} tracking number ({canon} uses {format}, optionally with a -1, -2 … suffix)"
            ),
        ));
    }
    Ok(canon)
}

/// A calendar date `YYYY-MM-DD`.
pub fn date(field: &str, v: &str) -> R {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(v, &fmt).map(|_| ()).map_err(|_| err(field, format!("expected a date YYYY-MM-DD, got {v:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: R) -> String {
        match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn carriers_and_their_tracking_formats() {
        assert_eq!(carrier_tracking("dhl", "1234567890").unwrap(), "DHL");
        assert_eq!(carrier_tracking("FedEx", "123456789012-2").unwrap(), "FedEx");
        assert_eq!(carrier_tracking("ups", "1Z999AA10123456784").unwrap(), "UPS");
        assert_eq!(carrier_tracking("Blue Dart", "12345678901").unwrap(), "BlueDart");
        assert_eq!(carrier_tracking("USPS", "EA123456789US").unwrap(), "USPS");
        let e = carrier_tracking("Pigeon", "1234567890").unwrap_err().to_string();
        assert!(e.contains("carrier") && e.contains("FedEx, UPS"), "{e}");
        let e = carrier_tracking("DHL", "12345").unwrap_err().to_string();
        assert!(e.contains("tracking_number") && e.contains("not a DHL tracking number"), "{e}");
        assert!(carrier_tracking("FedEx", "12345678901x").is_err());
    }

    #[test]
    fn names_the_field() {
        assert_eq!(field_of(job_name("a")), "job_name");
        assert_eq!(field_of(job_name("bad name")), "job_name");
        assert!(job_name("Seed-2026-11").is_ok());
        assert_eq!(field_of(job_name("Seed_2026-11")), "job_name");
        assert_eq!(field_of(job_name("-seed")), "job_name");
        assert_eq!(field_of(job_name(&"x".repeat(25))), "job_name");
        assert_eq!(field_of(storage_account("Upper")), "storage_account");
        assert_eq!(field_of(container("a--b")), "container");
        assert!(container("seed-import").is_ok());
        assert_eq!(field_of(subscription_id("1234")), "subscription_id");
        assert!(subscription_id("0f0e0d0c-0000-4000-8000-00000000abcd").is_ok());
        assert_eq!(field_of(hex_digest("manifest_root", "ABCD", 2)), "manifest_root");
        assert!(hex_digest("manifest_root", "abcd", 2).is_ok());
        assert_eq!(field_of(date("ship_date", "2026-13-01")), "ship_date");
        assert!(date("ship_date", "2026-11-22").is_ok());
        assert_eq!(field_of(request_id("")), "request_id");
        assert_eq!(field_of(request_id(&"x".repeat(129))), "request_id");
    }

    #[test]
    fn recovery_passwords_follow_bitlocker_rules_and_are_never_echoed() {
        let good = "000011-000022-000033-000044-000055-000066-000077-000088";
        assert!(recovery_password(good).is_ok());
        let bad = "000011-000022-000033-000044-000055-000066-000077-000089";
        let e = recovery_password(bad).unwrap_err().to_string();
        assert!(e.contains("group 8"), "{e}");
        assert!(!e.contains("000089"), "secret leaked into the error: {e}");
        assert!(recovery_password("123").is_err());
    }
}
