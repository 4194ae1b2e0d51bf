//! Route selection for HTTP APIs, with AWS's priority: a route without a greedy variable beats
//! one with; among those, more literal segments win, then longer templates; a route naming the
//! method beats `ANY`; `$default` catches what nothing else matched.

/// One segment of a route's path template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{name+}`: the rest of the path, one or more segments; only last.
    Greedy(String),
}

/// A parsed route path (`/items/{id}`, `/files/{proxy+}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

impl Template {
    /// `None` when the path is not a valid template (a greedy variable not last, an empty or
    /// unbalanced variable).
    pub fn parse(path: &str) -> Option<Template> {
        let path = path.strip_prefix('/')?;
        let mut segments = Vec::new();
        let parts: Vec<&str> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let seg = if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
            {
                if let Some(name) = inner.strip_suffix('+') {
                    if i != parts.len() - 1 || name.is_empty() {
                        return None;
                    }
                    Segment::Greedy(name.to_string())
                } else {
                    if inner.is_empty() || inner.contains(['{', '}']) {
                        return None;
                    }
                    Segment::Param(inner.to_string())
                }
            } else {
                if part.contains(['{', '}']) {
                    return None;
                }
                Segment::Literal(part.to_string())
            };
            segments.push(seg);
        }
        Some(Template { segments })
    }

    /// The path parameters when `path` (percent-encoded, starting with `/`) matches.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let parts: Vec<&str> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.split('/').collect()
        };
        let mut params = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Literal(l) => {
                    if parts.get(i).map(|p| decode(p)) != Some(l.clone()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let p = parts.get(i).filter(|p| !p.is_empty())?;
                    params.push((name.clone(), decode(p)));
                }
                Segment::Greedy(name) => {
                    let rest = parts.get(i..).filter(|r| !r.is_empty())?.join("/");
                    if rest.is_empty() {
                        return None;
                    }
                    params.push((name.clone(), decode(&rest)));
                    return Some(params);
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    /// Bigger is more specific.
    fn rank(&self) -> (bool, usize, usize) {
        let greedy = self
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Greedy(_)));
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (!greedy, literals, self.segments.len())
    }
}

fn decode(s: &str) -> String {
    percent_decode(s)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The route chosen for a request: its index in the input, and its path parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Selected {
    pub index: usize,
    pub params: Vec<(String, String)>,
}

/// Picks among `route_keys` (`GET /items/{id}`, `ANY /{proxy+}`, `$default`) for a request.
pub fn select(route_keys: &[&str], method: &str, path: &str) -> Option<Selected> {
    let mut best: Option<((bool, usize, usize), bool, Selected)> = None;
    let mut default = None;
    for (index, key) in route_keys.iter().enumerate() {
        if *key == "$default" {
            default = Some(index);
            continue;
        }
        let Some((m, p)) = key.split_once(' ') else {
            continue;
        };
        let exact = m == method;
        if !exact && m != "ANY" {
            continue;
        }
        let Some(t) = Template::parse(p) else {
            continue;
        };
        let Some(params) = t.matches(path) else {
            continue;
        };
        let rank = t.rank();
        let better = match &best {
            None => true,
            Some((r, e, _)) => (rank, exact) > (*r, *e),
        };
        if better {
            best = Some((rank, exact, Selected { index, params }));
        }
    }
    best.map(|(_, _, s)| s).or(default.map(|index| Selected {
        index,
        params: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[&str] = &[
        "GET /items/{id}",
        "ANY /items/{id}",
        "GET /items/special",
        "ANY /{proxy+}",
        "GET /items/{id}/{rest+}",
        "$default",
        "POST /",
    ];

    fn pick(method: &str, path: &str) -> Option<(&'static str, Vec<(String, String)>)> {
        select(ROUTES, method, path).map(|s| (ROUTES[s.index], s.params))
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn priority_follows_aws() {
        assert_eq!(
            pick("GET", "/items/special"),
            Some(("GET /items/special", p(&[])))
        );
        assert_eq!(
            pick("GET", "/items/42"),
            Some(("GET /items/{id}", p(&[("id", "42")])))
        );
        assert_eq!(
            pick("DELETE", "/items/42"),
            Some(("ANY /items/{id}", p(&[("id", "42")])))
        );
        assert_eq!(
            pick("GET", "/items/42/a/b%20c"),
            Some((
                "GET /items/{id}/{rest+}",
                p(&[("id", "42"), ("rest", "a/b c")])
            ))
        );
        assert_eq!(
            pick("PUT", "/other/x"),
            Some(("ANY /{proxy+}", p(&[("proxy", "other/x")])))
        );
        assert_eq!(pick("POST", "/"), Some(("POST /", p(&[]))));
        assert_eq!(pick("GET", "/"), Some(("$default", p(&[]))));
    }

    #[test]
    fn no_default_no_match() {
        assert_eq!(select(&["GET /a"], "GET", "/b"), None);
        assert_eq!(select(&["GET /a/{x}"], "GET", "/a/"), None);
        assert_eq!(select(&["GET /a/{x+}"], "GET", "/a"), None);
    }

    #[test]
    fn templates_reject_bad_greedy() {
        assert!(Template::parse("/{a+}/b").is_none());
        assert!(Template::parse("/{}").is_none());
        assert!(Template::parse("no-slash").is_none());
        assert!(Template::parse("/").is_some());
    }
}
