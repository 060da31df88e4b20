//! Version constraints on capabilities, with the syntax the reference accepts (Masterminds
//! semver): `=`, `!=`, `>`, `>=`, `<`, `<=`, `~`, `^`, wildcards (`1.x`, `1.*`, `*`), partial
//! versions (`1.2`), hyphen ranges (`1.0 - 1.5`), AND by comma or space, OR by `||`. A version or
//! constraint that does not parse falls back to exact string equality, as in the reference.

use std::cmp::Ordering;

/// Whether a provider's `version` satisfies a dependency's `constraint` (empty = anything).
pub fn satisfies(version: &str, constraint: &str) -> bool {
    let constraint = constraint.trim();
    if constraint.is_empty() {
        return true;
    }
    match (Version::parse(version), parse_constraint(constraint)) {
        (Some(version), Some(alternatives)) => alternatives
            .iter()
            .any(|all| all.iter().all(|c| c.admits(&version))),
        _ => version.trim() == constraint,
    }
}

/// Orders provider versions for the tie-break: any valid version above an invalid one; two
/// invalid ones compare as strings.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (Version::parse(a), Version::parse(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => a.cmp(b),
    }
}

/// Orders two versions when both are valid, `None` when either is not.
pub fn compare_valid(a: &str, b: &str) -> Option<Ordering> {
    Some(Version::parse(a)?.cmp(&Version::parse(b)?))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    core: [u64; 3],
    /// Dot-separated pre-release identifiers; a pre-release sorts below its release.
    pre: Vec<String>,
}

impl Version {
    /// Lenient, like the reference: `v1.2` is 1.2.0; wildcards are not versions.
    fn parse(s: &str) -> Option<Version> {
        let partial = Partial::parse(s)?;
        (!partial.wildcard && partial.parts[0].is_some()).then(|| partial.floor())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre(&self.pre, &other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn compare_pre(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// A version that may stop early or use wildcards: `1`, `1.2`, `1.x`, `*`, `v1.2.3-rc.1`.
/// `parts[i] == None` means "any" from position i on.
#[derive(Debug, Clone)]
struct Partial {
    parts: [Option<u64>; 3],
    pre: Vec<String>,
    wildcard: bool,
}

impl Partial {
    fn parse(s: &str) -> Option<Partial> {
        let s = s.trim();
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let s = s.split('+').next()?; // build metadata never matters
        let (core, pre) = match s.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => {
                (core, pre.split('.').map(str::to_owned).collect())
            }
            Some(_) => return None,
            None => (s, Vec::new()),
        };
        let fields: Vec<&str> = core.split('.').collect();
        if fields.is_empty() || fields.len() > 3 {
            return None;
        }
        let mut parts = [None; 3];
        let mut wildcard = false;
        for (slot, field) in parts.iter_mut().zip(&fields) {
            if matches!(*field, "x" | "X" | "*") {
                wildcard = true;
                continue;
            }
            if wildcard || field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = Some(field.parse().ok()?);
        }
        Some(Partial {
            parts,
            pre,
            wildcard,
        })
    }

    fn is_full(&self) -> bool {
        self.parts.iter().all(Option::is_some)
    }

    /// Lowest version this partial names.
    fn floor(&self) -> Version {
        Version {
            core: self.parts.map(|p| p.unwrap_or(0)),
            pre: self.pre.clone(),
        }
    }

    /// First version past everything this partial names (`None` for `*`).
    fn ceiling(&self) -> Option<Version> {
        let bump = |i: usize| {
            let mut core = [0; 3];
            core[..i].copy_from_slice(&self.parts.map(|p| p.unwrap_or(0))[..i]);
            core[i - 1] += 1;
            Version {
                core,
                pre: Vec::new(),
            }
        };
        match self.parts {
            [None, _, _] => None,
            [Some(_), None, _] => Some(bump(1)),
            [Some(_), Some(_), None] => Some(bump(2)),
            [Some(_), Some(_), Some(_)] => Some(bump(3)),
        }
    }
}

/// One comparison: `version <op> bound`.
#[derive(Debug, Clone)]
enum Comparator {
    AtLeast(Version),
    Above(Version),
    Below(Version),
    AtMost(Version),
    Not(Partial),
    Within(Partial),
}

impl Comparator {
    fn admits(&self, v: &Version) -> bool {
        // A pre-release only satisfies comparators that mention a pre-release themselves.
        if !v.pre.is_empty() && !self.mentions_pre() {
            return false;
        }
        match self {
            Comparator::AtLeast(bound) => v >= bound,
            Comparator::Above(bound) => v > bound,
            Comparator::Below(bound) => v < bound,
            Comparator::AtMost(bound) => v <= bound,
            Comparator::Not(partial) => !within(partial, v),
            Comparator::Within(partial) => within(partial, v),
        }
    }

    fn mentions_pre(&self) -> bool {
        match self {
            Comparator::AtLeast(b)
            | Comparator::Above(b)
            | Comparator::Below(b)
            | Comparator::AtMost(b) => !b.pre.is_empty(),
            Comparator::Not(p) | Comparator::Within(p) => !p.pre.is_empty(),
        }
    }
}

fn within(partial: &Partial, v: &Version) -> bool {
    if partial.is_full() {
        return *v == partial.floor();
    }
    *v >= partial.floor() && partial.ceiling().is_none_or(|ceiling| *v < ceiling)
}

/// `||`-separated alternatives, each a list of comparators that must all hold.
fn parse_constraint(s: &str) -> Option<Vec<Vec<Comparator>>> {
    s.split("||").map(parse_conjunction).collect()
}

fn parse_conjunction(s: &str) -> Option<Vec<Comparator>> {
    let mut tokens: Vec<String> = Vec::new();
    for raw in s.split([',', ' ']).filter(|t| !t.is_empty()) {
        // An operator written apart from its version (`>= 1.2`) joins the next token.
        match tokens.last_mut() {
            Some(last) if is_operator(last) => last.push_str(raw),
            _ => tokens.push(raw.to_owned()),
        }
    }
    let mut comparators = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens.get(i + 1).map(String::as_str) == Some("-") {
            // Hyphen range `a - b`.
            let low = Partial::parse(&tokens[i])?;
            let high = Partial::parse(tokens.get(i + 2)?)?;
            comparators.push(Comparator::AtLeast(low.floor()));
            comparators.push(match (high.is_full(), high.ceiling()) {
                (true, _) => Comparator::AtMost(high.floor()),
                (false, Some(ceiling)) => Comparator::Below(ceiling),
                (false, None) => return None,
            });
            i += 3;
            continue;
        }
        comparators.extend(parse_comparator(&tokens[i])?);
        i += 1;
    }
    (!comparators.is_empty()).then_some(comparators)
}

fn is_operator(token: &str) -> bool {
    token.chars().all(|c| "=!<>~^".contains(c))
}

fn parse_comparator(token: &str) -> Option<Vec<Comparator>> {
    let split = token
        .find(|c: char| !"=!<>~^".contains(c))
        .unwrap_or(token.len());
    let (op, rest) = token.split_at(split);
    let partial = Partial::parse(rest)?;
    let floor = partial.floor();
    Some(match op {
        "" | "=" => vec![Comparator::Within(partial)],
        "!=" => vec![Comparator::Not(partial)],
        ">=" => vec![Comparator::AtLeast(floor)],
        ">" if partial.is_full() => vec![Comparator::Above(floor)],
        ">" => vec![Comparator::AtLeast(partial.ceiling()?)],
        "<" => vec![Comparator::Below(floor)],
        "<=" if partial.is_full() => vec![Comparator::AtMost(floor)],
        "<=" => match partial.ceiling() {
            Some(ceiling) => vec![Comparator::Below(ceiling)],
            None => Vec::new(),
        },
        "~" | "~>" => {
            // Patch-level changes: ~1.2.3 := >=1.2.3 <1.3.0; ~1 := >=1.0.0 <2.0.0.
            let ceiling = match partial.parts {
                [Some(major), None, _] => Version {
                    core: [major + 1, 0, 0],
                    pre: Vec::new(),
                },
                [Some(major), Some(minor), _] => Version {
                    core: [major, minor + 1, 0],
                    pre: Vec::new(),
                },
                [None, _, _] => return Some(Vec::new()),
            };
            vec![Comparator::AtLeast(floor), Comparator::Below(ceiling)]
        }
        "^" => {
            // Compatible changes: the leftmost non-zero component may not change.
            let ceiling = match partial.parts {
                [None, _, _] => return Some(Vec::new()),
                [Some(major), _, _] if major > 0 => [major + 1, 0, 0],
                [Some(0), None, _] => [1, 0, 0],
                [Some(0), Some(minor), _] if minor > 0 => [0, minor + 1, 0],
                [Some(0), Some(0), None] => [0, 1, 0],
                [Some(0), Some(0), Some(patch)] => [0, 0, patch + 1],
                _ => return None,
            };
            vec![
                Comparator::AtLeast(floor),
                Comparator::Below(Version {
                    core: ceiling,
                    pre: Vec::new(),
                }),
            ]
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_examples() {
        // Providers a=1.0.0, b=c=2.1.0 (the rules: docs/contract.md#dependency-resolution).
        for constraint in [
            "1.0.0",
            "=1.0.0",
            "<2.0.0",
            "^1.0.0",
            ">=1.0.0, <2.0.0",
            ">=1.0.0 <2.0.0",
            "1.0.0 - 1.5.0",
            "^3.0.0 || 1.x",
        ] {
            assert!(satisfies("1.0.0", constraint), "{constraint}");
            assert!(!satisfies("2.1.0", constraint), "{constraint}");
        }
        for constraint in [">=2.0.0", "~2.1", "2.x"] {
            assert!(!satisfies("1.0.0", constraint), "{constraint}");
            assert!(satisfies("2.1.0", constraint), "{constraint}");
        }
        assert!(!satisfies("1.0.0", "garbage"));
        assert!(
            satisfies("garbage", "garbage"),
            "unparseable: exact string match"
        );
    }

    #[test]
    fn tilde_caret_and_partials() {
        assert!(satisfies("1.2.9", "~1.2.3") && !satisfies("1.3.0", "~1.2.3"));
        assert!(satisfies("1.9.0", "~1") && !satisfies("2.0.0", "~1"));
        assert!(satisfies("2.9.9", "^2") && !satisfies("3.0.0", "^2"));
        assert!(satisfies("0.2.5", "^0.2.3") && !satisfies("0.3.0", "^0.2.3"));
        assert!(satisfies("0.0.3", "^0.0.3") && !satisfies("0.0.4", "^0.0.3"));
        assert!(satisfies("1.2.7", "1.2") && !satisfies("1.3.0", "1.2"));
        assert!(satisfies("1.3.0", ">1.2") && !satisfies("1.2.9", ">1.2"));
        assert!(satisfies("1.2.9", "<=1.2") && !satisfies("1.3.0", "<=1.2"));
        assert!(satisfies("5.0.0", "*") && satisfies("5.0.0", ">= 1.0"));
        assert!(satisfies("v1.2.3", "1.2.3") && satisfies("1.2", ">=1.2.0"));
        assert!(!satisfies("1.2.3", "!=1.2.3") && satisfies("1.2.4", "!=1.2.3"));
        assert!(satisfies("1.5.0", "1.0 - 1.5") && !satisfies("1.6.0", "1.0 - 1.5"));
    }

    #[test]
    fn pre_releases_need_a_pre_release_constraint() {
        assert!(!satisfies("2.0.0-beta.1", ">=1.0.0"));
        assert!(satisfies("2.0.0-beta.2", ">=2.0.0-beta.1"));
        assert!(satisfies("1.0.0", ""), "no constraint admits anything");
        assert!(!satisfies("", ">=1.0.0"), "no version fails any constraint");
    }

    #[test]
    fn ordering_for_the_tie_break() {
        assert_eq!(compare("2.1.0", "1.9.9"), Ordering::Greater);
        assert_eq!(compare("2.0.0", "2.0.0-rc.1"), Ordering::Greater);
        assert_eq!(compare("1.0.0", "garbage"), Ordering::Greater);
        assert_eq!(compare("1.10.0", "1.9.0"), Ordering::Greater);
        assert_eq!(compare("abc", "abd"), Ordering::Less);
    }
}
