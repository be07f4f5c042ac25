//! Route selection: host and path prefix pick the route, longest prefix first.

use crate::config::Route;

/// Routes ordered for selection: longest path prefix first, then config order.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// The upstream names the routes use, sorted; each route's `upstream_slot` indexes it.
    upstreams: Vec<String>,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> RouteTable {
        let mut routes = routes.to_vec();
        // Stable sort keeps config order among equal prefixes.
        routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        let mut upstreams: Vec<String> = routes.iter().map(|r| r.upstream.clone()).collect();
        upstreams.sort();
        upstreams.dedup();
        for route in &mut routes {
            route.upstream_slot = upstreams.binary_search(&route.upstream).unwrap_or_default();
        }
        RouteTable { routes, upstreams }
    }

    /// The upstream names the routes use, in the order `upstream_slot` counts.
    pub fn upstreams(&self) -> &[String] {
        &self.upstreams
    }

    /// The route for `host` (lower-case, no port; `None` when the request named none) and the
    /// normalised `path`.
    pub fn select(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            let host_ok =
                r.hosts.is_empty() || host.is_some_and(|h| r.hosts.iter().any(|x| x == h));
            host_ok && prefix_matches(&r.path_prefix, path)
        })
    }
}

/// Segment-boundary prefix: `/pay` matches `/pay` and `/pay/x`, never `/payroll`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests;
