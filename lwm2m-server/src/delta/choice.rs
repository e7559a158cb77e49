//! Which release of a job's target family one device is sent (issue 15). A family is the
//! releases that end in the same image: the full release of it and the deltas that make it from
//! various precursors. A device gets the delta whose precursor is the image it runs, known from
//! the version it reports (/3/0/3) matched to a release of that version, and the full release
//! otherwise, or always after it refused a delta.

use crate::store::ReleaseRecord;

/// What to send one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub release: ReleaseRecord,
    /// For a delta: the bytes it saves against the full image.
    pub saves: Option<u64>,
}

/// The digest of the image a device runs that reports `version`, when the releases say it
/// unambiguously (every release of that version ends in the same image).
pub fn running_image(releases: &[ReleaseRecord], version: &str) -> Option<String> {
    let mut digests = releases
        .iter()
        .filter(|r| r.version.as_deref() == Some(version))
        .map(ReleaseRecord::family_sha256);
    let first = digests.next()?;
    digests.all(|d| d == first).then(|| first.to_string())
}

/// The digest of the image a device runs that reports `version` (if it says), given the release
/// it last installed with this server (`installed`): that release's image, when its version is
/// the one reported (a stored digest beats a version two releases share), else what the
/// version names.
pub fn running_image_of(
    releases: &[ReleaseRecord],
    version: Option<&str>,
    installed: Option<&str>,
) -> Option<String> {
    let installed = installed.and_then(|id| releases.iter().find(|r| r.id == id));
    if let Some(r) = installed
        && version.is_none_or(|v| r.version.as_deref() == Some(v))
    {
        return Some(r.family_sha256().to_string());
    }
    running_image(releases, version?)
}

/// Picks the release of `target`'s family for a device running `running` (an image digest, if
/// known). `full_only`: the device refused a delta of this job, so it gets the full image.
pub fn choose(
    target: &ReleaseRecord,
    releases: &[ReleaseRecord],
    running: Option<&str>,
    full_only: bool,
) -> Choice {
    let family = target.family_sha256();
    let full = std::iter::once(target)
        .chain(releases)
        .find(|r| !r.is_delta() && r.image_sha256 == family);
    let Some(full) = full else {
        // Only deltas make this image: the target is all there is to send.
        return Choice {
            release: target.clone(),
            saves: target.is_delta().then_some(0),
        };
    };
    let full_choice = Choice {
        release: full.clone(),
        saves: None,
    };
    if full_only {
        return full_choice;
    }
    let Some(running) = running else {
        return full_choice;
    };
    // The smallest delta from the running image that is smaller than the full image.
    std::iter::once(target)
        .chain(releases)
        .filter(|r| {
            r.is_delta()
                && r.family_sha256() == family
                && r.precursor_sha256.as_deref() == Some(running)
                && r.image_size < full.image_size
        })
        .min_by_key(|r| r.image_size)
        .map(|d| Choice {
            release: d.clone(),
            saves: Some(full.image_size - d.image_size),
        })
        .unwrap_or(full_choice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(id: &str, version: &str, sha: &str, size: u64) -> ReleaseRecord {
        ReleaseRecord {
            id: id.into(),
            kind: "suit".into(),
            version: Some(version.into()),
            sequence_number: Some(1),
            image_sha256: sha.into(),
            image_size: size,
            manifest_sha256: None,
            manifest_size: None,
            vendor_id: None,
            class_id: None,
            image_uri: None,
            added_at_ms: 0,
            max_block_size: None,
            precursor_sha256: None,
            precursor_size: None,
            new_image_sha256: None,
            new_image_size: None,
        }
    }

    fn delta(id: &str, from: &ReleaseRecord, to: &ReleaseRecord, size: u64) -> ReleaseRecord {
        ReleaseRecord {
            kind: "delta".into(),
            version: to.version.clone(),
            image_sha256: format!("patch-{id}"),
            image_size: size,
            precursor_sha256: Some(from.image_sha256.clone()),
            precursor_size: Some(from.image_size),
            new_image_sha256: Some(to.image_sha256.clone()),
            new_image_size: Some(to.image_size),
            ..full(id, "", "", 0)
        }
    }

    #[test]
    fn the_delta_from_the_running_image_else_the_full_release() {
        let v1 = full("v1", "1.0", "aa", 1000);
        let v15 = full("v15", "1.5", "cc", 1000);
        let v2 = full("v2", "2.0", "bb", 1000);
        let d1 = delta("d1", &v1, &v2, 100);
        let d15 = delta("d15", &v15, &v2, 300);
        let all = [v1.clone(), v15.clone(), v2.clone(), d1.clone(), d15.clone()];
        let running = running_image(&all, "1.0");
        assert_eq!(running.as_deref(), Some("aa"));
        // Given the full target or one of its deltas, the job picks per device.
        for target in [&v2, &d15] {
            let c = choose(target, &all, running.as_deref(), false);
            assert_eq!((c.release.id.as_str(), c.saves), ("d1", Some(900)));
            let c = choose(target, &all, Some("cc"), false);
            assert_eq!((c.release.id.as_str(), c.saves), ("d15", Some(700)));
            for (running, full_only) in [(None, false), (Some("zz"), false), (Some("aa"), true)] {
                let c = choose(target, &all, running, full_only);
                assert_eq!((c.release.id.as_str(), c.saves), ("v2", None));
            }
        }
        // A device already on the target image gets the full release (no delta from itself).
        assert_eq!(choose(&v2, &all, Some("bb"), false).release.id, "v2");
    }

    #[test]
    fn the_release_last_installed_names_the_image_when_its_version_is_reported() {
        let v1 = full("v1", "1.0", "aa", 1000);
        let v1b = full("v1b", "1.0", "ab", 1000);
        let v2 = full("v2", "2.0", "bb", 1000);
        let all = [v1.clone(), v1b.clone(), v2];
        // The version alone is ambiguous; the installed release settles it.
        assert_eq!(running_image_of(&all, Some("1.0"), None), None);
        assert_eq!(
            running_image_of(&all, Some("1.0"), Some("v1b")).as_deref(),
            Some("ab")
        );
        assert_eq!(
            running_image_of(&all, None, Some("v1")).as_deref(),
            Some("aa")
        );
        // A device that reports another version since then runs something else.
        assert_eq!(
            running_image_of(&all, Some("2.0"), Some("v1")).as_deref(),
            Some("bb")
        );
        assert_eq!(running_image_of(&all, Some("3.0"), Some("v1")), None);
    }

    #[test]
    fn an_ambiguous_version_a_delta_larger_than_the_image_and_a_lone_delta() {
        let v1 = full("v1", "1.0", "aa", 1000);
        let v1b = full("v1b", "1.0", "ab", 1000);
        let v2 = full("v2", "2.0", "bb", 1000);
        let big = delta("big", &v1, &v2, 1000);
        assert_eq!(running_image(&[v1.clone(), v1b], "1.0"), None);
        assert_eq!(running_image(std::slice::from_ref(&v1), "9.9"), None);
        let all = [v1.clone(), v2.clone(), big.clone()];
        assert_eq!(choose(&v2, &all, Some("aa"), false).release.id, "v2");
        let lone = [v1, big.clone()];
        let c = choose(&big, &lone, Some("aa"), true);
        assert_eq!((c.release.id.as_str(), c.saves), ("big", Some(0)));
    }
}
