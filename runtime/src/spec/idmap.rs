//! `linux.uidMappings` / `linux.gidMappings`: checked before anything is created, so that a mapping
//! the kernel would refuse (or one outside the host's subordinate ids) fails `create` with the
//! field named instead of an EINVAL from a write to /proc/<pid>/uid_map.

use std::path::Path;

use oci_spec::runtime::LinuxIdMapping;

use super::{SpecError, invalid};

/// The kernel accepts at most this many lines in one uid_map/gid_map (since Linux 4.15).
pub const MAX_LINES: usize = 340;
/// A map is written with one write(2), which the kernel takes only if it is shorter than a page.
const MAX_WRITE: usize = 4095;

/// One line of a uid or gid map: `size` ids from `container` inside map to `host` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

impl IdMap {
    pub fn new(container: u32, host: u32, size: u32) -> Self {
        Self {
            container,
            host,
            size,
        }
    }

    /// The host id of container id `id`, if this line maps it.
    fn to_host(self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container)?;
        (offset < self.size).then(|| self.host + offset)
    }

    /// The container id of host id `id`, if this line maps it.
    fn to_container(self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.host)?;
        (offset < self.size).then(|| self.container + offset)
    }
}

/// The id maps of a user namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: Vec<IdMap>,
    pub gid: Vec<IdMap>,
}

impl IdMaps {
    pub fn uid_to_host(&self, id: u32) -> Option<u32> {
        self.uid.iter().find_map(|m| m.to_host(id))
    }

    pub fn gid_to_host(&self, id: u32) -> Option<u32> {
        self.gid.iter().find_map(|m| m.to_host(id))
    }

    pub fn host_uid_to_container(&self, id: u32) -> Option<u32> {
        self.uid.iter().find_map(|m| m.to_container(id))
    }

    pub fn host_gid_to_container(&self, id: u32) -> Option<u32> {
        self.gid.iter().find_map(|m| m.to_container(id))
    }
}

/// config.json's entries, as they are.
pub fn from_spec(maps: &[LinuxIdMapping]) -> Vec<IdMap> {
    maps.iter()
        .map(|m| IdMap::new(m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// The text written to /proc/<pid>/uid_map (or gid_map).
pub fn format(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
        .collect()
}

/// /proc/<pid>/uid_map (or gid_map) as the kernel shows it; `None` if it is not in that form.
pub fn parse_proc(text: &str) -> Option<Vec<IdMap>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            let m = IdMap::new(f.next()??, f.next()??, f.next()??);
            f.next().is_none().then_some(m)
        })
        .collect()
}

/// Whether two lists name the same mapping, whatever the order of their lines.
pub fn same(a: &[IdMap], b: &[IdMap]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// End (exclusive) of a range, in u64 so that it cannot wrap.
fn end(first: u32, size: u32) -> u64 {
    u64::from(first) + u64::from(size)
}

fn overlap(a: (u32, u32), b: (u32, u32)) -> bool {
    u64::from(a.0) < end(b.0, b.1) && u64::from(b.0) < end(a.0, a.1)
}

/// What the kernel checks when the map is written, and that the text fits in one write.
/// `field` is `linux.uidMappings` or `linux.gidMappings`.
pub fn validate(maps: &[IdMap], field: &str) -> Result<(), SpecError> {
    if maps.len() > MAX_LINES {
        return Err(invalid(
            field,
            format!(
                "{} entries; the kernel accepts at most {MAX_LINES}",
                maps.len()
            ),
        ));
    }
    for (i, m) in maps.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if m.size == 0 {
            return Err(invalid(format!("{at}.size"), "must be greater than 0"));
        }
        // The kernel refuses a range that reaches 4294967295 ((uid_t)-1, "no id").
        for (what, first) in [("containerID", m.container), ("hostID", m.host)] {
            if end(first, m.size) > u64::from(u32::MAX) {
                return Err(invalid(
                    &at,
                    format!(
                        "{what} {first} + size {} goes beyond the last id, {}",
                        m.size,
                        u32::MAX - 1
                    ),
                ));
            }
        }
        for (j, other) in maps[..i].iter().enumerate() {
            let sides = [
                (
                    "container",
                    (m.container, m.size),
                    (other.container, other.size),
                ),
                ("host", (m.host, m.size), (other.host, other.size)),
            ];
            for (side, a, b) in sides {
                if overlap(a, b) {
                    return Err(invalid(
                        &at,
                        format!(
                            "{side} ids {}-{} overlap those of {field}[{j}] ({}-{})",
                            a.0,
                            end(a.0, a.1) - 1,
                            b.0,
                            end(b.0, b.1) - 1
                        ),
                    ));
                }
            }
        }
    }
    let text = format(maps);
    if text.len() > MAX_WRITE {
        return Err(invalid(
            field,
            format!(
                "{} bytes when written; the kernel takes a map of at most {MAX_WRITE} bytes",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// The ranges `/etc/subuid` (or `/etc/subgid`) grants to any of `names`: `(first, count)`.
pub fn subordinate_ranges(text: &str, names: &[&str]) -> Vec<(u32, u32)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let (name, first, count) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() || !names.contains(&name) {
                return None;
            }
            Some((first.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

/// Every host id of `maps` lies in one of `ranges` (runs of consecutive ranges count as one).
pub fn check_subordinate(
    maps: &[IdMap],
    ranges: &[(u32, u32)],
    field: &str,
    file: &Path,
) -> Result<(), SpecError> {
    let mut ranges: Vec<(u64, u64)> = ranges
        .iter()
        .map(|&(first, count)| (u64::from(first), u64::from(first) + u64::from(count)))
        .collect();
    ranges.sort_unstable();
    // Merge touching or overlapping ranges so that a mapping spanning two of them is allowed.
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, stop) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(stop),
            _ => merged.push((start, stop)),
        }
    }
    for (i, m) in maps.iter().enumerate() {
        let (start, stop) = (u64::from(m.host), end(m.host, m.size));
        if !merged.iter().any(|&(a, b)| a <= start && stop <= b) {
            let granted: Vec<String> = merged
                .iter()
                .map(|(a, b)| format!("{a}-{}", b - 1))
                .collect();
            return Err(invalid(
                format!("{field}[{i}]"),
                format!(
                    "host ids {start}-{} are outside the subordinate ids {} grants to root ({})",
                    stop - 1,
                    file.display(),
                    granted.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn m(container: u32, host: u32, size: u32) -> IdMap {
        IdMap::new(container, host, size)
    }

    const F: &str = "linux.uidMappings";

    #[rstest]
    #[case::one(&[m(0, 100_000, 65_536)])]
    #[case::several_disjoint(&[m(0, 100_000, 1), m(1, 200_001, 999), m(1000, 1000, 1)])]
    #[case::touching_is_not_overlapping(&[m(0, 100_000, 10), m(10, 100_010, 10)])]
    #[case::up_to_the_last_id(&[m(0, 4_294_967_294, 1), m(4_294_967_294, 0, 1)])]
    fn valid_maps(#[case] maps: &[IdMap]) {
        validate(maps, F).expect("valid");
    }

    #[rstest]
    #[case::zero_size(&[m(0, 100_000, 0)], "invalid config: linux.uidMappings[0].size: must be greater than 0")]
    #[case::container_overflow(
        &[m(4_294_967_295, 100_000, 1)],
        "invalid config: linux.uidMappings[0]: containerID 4294967295 + size 1 goes beyond the last id, 4294967294"
    )]
    #[case::host_overflow(
        &[m(0, 4_294_967_000, 1000)],
        "invalid config: linux.uidMappings[0]: hostID 4294967000 + size 1000 goes beyond the last id, 4294967294"
    )]
    #[case::container_overlap(
        &[m(0, 100_000, 1000), m(999, 300_000, 10)],
        "invalid config: linux.uidMappings[1]: container ids 999-1008 overlap those of linux.uidMappings[0] (0-999)"
    )]
    #[case::host_overlap(
        &[m(0, 100_000, 1000), m(5000, 100_500, 1)],
        "invalid config: linux.uidMappings[1]: host ids 100500-100500 overlap those of linux.uidMappings[0] (100000-100999)"
    )]
    fn invalid_maps(#[case] maps: &[IdMap], #[case] error: &str) {
        assert_eq!(validate(maps, F).expect_err("invalid").to_string(), error);
    }

    #[test]
    fn at_most_340_lines() {
        let maps: Vec<IdMap> = (0..341).map(|i| m(i, 1000 + i, 1)).collect();
        assert_eq!(
            validate(&maps, F).expect_err("too many").to_string(),
            "invalid config: linux.uidMappings: 341 entries; the kernel accepts at most 340"
        );
        validate(&maps[..340], F).expect("340 is fine");
    }

    #[test]
    fn a_map_longer_than_one_write_is_refused() {
        let maps: Vec<IdMap> = (0..340)
            .map(|i| m(4_000_000_000 + i, 4_000_000_000 + i, 1))
            .collect();
        let err = validate(&maps, F).expect_err("too long").to_string();
        assert!(
            err.starts_with("invalid config: linux.uidMappings: 8160 bytes when written"),
            "{err}"
        );
    }

    #[test]
    fn maps_are_written_and_read_back_line_by_line() {
        let maps = [m(0, 100_000, 65_536), m(65_536, 1000, 1)];
        let text = format(&maps);
        assert_eq!(text, "0 100000 65536\n65536 1000 1\n");
        // As /proc/<pid>/uid_map shows it: aligned columns.
        let shown = "         0     100000      65536\n     65536       1000          1\n";
        let read = parse_proc(shown).expect("parsed");
        assert!(same(&read, &[maps[1], maps[0]]));
        assert!(!same(&read, &maps[..1]));
        assert_eq!(parse_proc("0 1\n"), None);
        assert_eq!(parse_proc("0 1 2 3\n"), None);
    }

    #[test]
    fn ids_translate_both_ways() {
        let maps = IdMaps {
            uid: vec![m(0, 100_000, 1000), m(1000, 5000, 1)],
            gid: vec![m(0, 200_000, 10)],
        };
        assert_eq!(maps.uid_to_host(0), Some(100_000));
        assert_eq!(maps.uid_to_host(999), Some(100_999));
        assert_eq!(maps.uid_to_host(1000), Some(5000));
        assert_eq!(maps.uid_to_host(1001), None);
        assert_eq!(maps.host_uid_to_container(100_001), Some(1));
        assert_eq!(maps.host_uid_to_container(0), None);
        assert_eq!(maps.gid_to_host(10), None);
        assert_eq!(maps.host_gid_to_container(200_009), Some(9));
    }

    const SUBUID: &str = "\
alice:100000:65536
root:200000:65536
0:265536:1000
bob:300000:65536
broken line
root:x:1
";

    #[test]
    fn subordinate_ranges_of_root_by_name_or_uid() {
        assert_eq!(
            subordinate_ranges(SUBUID, &["root", "0"]),
            [(200_000, 65_536), (265_536, 1000)]
        );
        assert_eq!(subordinate_ranges(SUBUID, &["carol"]), []);
    }

    #[rstest]
    #[case::inside(&[m(0, 200_000, 65_536)])]
    // Two consecutive grants make one range.
    #[case::across_touching_grants(&[m(0, 200_000, 66_536)])]
    #[case::several(&[m(0, 200_000, 1), m(1, 265_000, 10)])]
    fn maps_inside_the_subordinate_ids(#[case] maps: &[IdMap]) {
        let ranges = subordinate_ranges(SUBUID, &["root", "0"]);
        check_subordinate(maps, &ranges, F, Path::new("/etc/subuid")).expect("inside");
    }

    #[rstest]
    #[case::another_users(&[m(0, 100_000, 65_536)], "[0]: host ids 100000-165535")]
    #[case::past_the_end(&[m(0, 200_000, 66_537)], "[0]: host ids 200000-266536")]
    #[case::host_root(&[m(0, 200_000, 1), m(1, 0, 1)], "[1]: host ids 0-0")]
    fn maps_outside_the_subordinate_ids(#[case] maps: &[IdMap], #[case] error: &str) {
        let ranges = subordinate_ranges(SUBUID, &["root", "0"]);
        let err = check_subordinate(maps, &ranges, F, Path::new("/etc/subuid"))
            .expect_err("outside")
            .to_string();
        assert_eq!(
            err,
            format!(
                "invalid config: linux.uidMappings{error} are outside the subordinate ids \
                 /etc/subuid grants to root (200000-266535)"
            )
        );
    }
}
