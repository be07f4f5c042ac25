//! The page of `report --html`: one self-contained HTML file (inline style, SVG and script; it
//! fetches nothing) drawing a [`Picture`].
//!
//! Identities, and the paths in refused requests, come from event files that any peer of a
//! gateway writes into, so nothing from the input reaches the page unescaped: markup and
//! attributes go through [`text`], and the data the script reads is JSON made inert inside its
//! `<script>` element by [`json_script`]; the script itself only ever sets `textContent`.
//!
//! The graph is laid out here, not in the browser: the file alone says what is drawn, it reads
//! without the script, and the same input gives the same bytes (a page can be diffed).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use serde::Serialize;

use super::picture::{EdgeKind, IdentityNode, Picture};
use super::window_text;

/// Height of a row of the graph (a node or a zone's heading).
const ROW: usize = 26;
/// Width of a character of the 12px monospace labels, near enough to size the boxes.
const CHAR_W: usize = 8;
/// Longest label drawn whole; longer ones are cut (the full text is in the node's title).
const MAX_LABEL: usize = 64;
/// Room between the identity column and the route column, for the edges.
const GAP: usize = 260;
const MARGIN: usize = 10;
/// Zone colours, by the zone's position in the sorted list of zones.
const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7", "#9c755f",
];
const UNKNOWN_ZONE_COLOUR: &str = "#bab0ac";

/// Escapes `s` for HTML text and for a double- or single-quoted attribute value.
pub(crate) fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `value` as JSON to put between `<script type="application/json">` and `</script>`: `<`, `>`
/// and `&` only occur inside JSON strings, where their `\u` escapes mean the same, and without
/// them the text can neither close the element nor open a comment.
pub(crate) fn json_script<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string(value)?;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            // Line terminators in JavaScript source, should the data ever be read as such.
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The whole page.
pub(crate) fn render(p: &Picture) -> Result<String, serde_json::Error> {
    let data = json_script(p)?;
    let zones = p.zones.join(", ");
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n",
        title = text(&format!("zonegate policy report: zones {zones}")),
    );
    legend(&mut s, p);
    graph(&mut s, p);
    s.push_str("<section id=\"details\" hidden></section>\n");
    table(&mut s, p);
    if !p.notes.is_empty() {
        s.push_str("<ul id=\"notes\">\n");
        for note in &p.notes {
            let _ = writeln!(s, "<li>note: {}</li>", text(note));
        }
        s.push_str("</ul>\n");
    }
    let _ = write!(
        s,
        "<script type=\"application/json\" id=\"zone-data\">{data}</script>\n\
         <script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    Ok(s)
}

fn legend(s: &mut String, p: &Picture) {
    let within = match p.window_s {
        0 => "over the whole files".to_string(),
        w => format!("within {}", window_text(w)),
    };
    let _ = writeln!(
        s,
        "<p class=\"legend\">Identities (left, by source zone) and routes (right, by zone). \
         <span class=\"key granted-used\">granted, used</span> \
         <span class=\"key stale\">granted, never used (stale)</span> \
         <span class=\"key observed-ungranted\">used, no longer granted</span> \
         <span class=\"key observed-denied\">refused attempts</span> \
         <span class=\"key shared\">shared identity</span> (seen from at least {} peer IPs or \
         certificates {}). Select an identity to see its edges.</p>",
        p.shared_threshold,
        text(&within),
    );
}

/// `label`, cut to [`MAX_LABEL`] characters.
fn label(s: &str) -> String {
    if s.chars().count() <= MAX_LABEL {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(MAX_LABEL - 1).collect();
    cut.push('…');
    cut
}

fn width(labels: impl Iterator<Item = usize>) -> usize {
    labels.max().unwrap_or(0).min(MAX_LABEL) * CHAR_W + 16
}

/// One column: a heading row per zone, then its nodes; the y of each node's centre.
fn column<'a>(
    items: impl Iterator<Item = (&'a str, &'a str)>,
) -> (Vec<(usize, &'a str)>, HashMap<&'a str, usize>) {
    let mut headings = Vec::new();
    let mut centres = HashMap::new();
    let mut row = 0;
    let mut zone = None;
    for (z, id) in items {
        if zone != Some(z) {
            headings.push((row * ROW + MARGIN, z));
            zone = Some(z);
            row += 1;
        }
        centres.insert(id, row * ROW + MARGIN + ROW / 2);
        row += 1;
    }
    (headings, centres)
}

fn graph(s: &mut String, p: &Picture) {
    let zones: BTreeSet<&str> = p
        .zones
        .iter()
        .map(String::as_str)
        .chain(p.identities.iter().map(|i| i.zone.as_str()))
        .filter(|z| *z != crate::config::UNKNOWN_ZONE)
        .collect();
    let colour = |zone: &str| -> &'static str {
        zones
            .iter()
            .position(|z| *z == zone)
            .map_or(UNKNOWN_ZONE_COLOUR, |i| PALETTE[i % PALETTE.len()])
    };
    let (id_heads, id_y) = column(
        p.identities
            .iter()
            .map(|i| (i.zone.as_str(), i.id.as_str())),
    );
    let (route_heads, route_y) = column(p.routes.iter().map(|r| (r.zone.as_str(), r.id.as_str())));
    let left_w = width(p.identities.iter().map(|i| i.id.chars().count()));
    let right_w = width(p.routes.iter().map(|r| r.id.chars().count()));
    let right_x = MARGIN + left_w + GAP;
    let rows = (id_heads.len() + id_y.len()).max(route_heads.len() + route_y.len());
    let _ = writeln!(
        s,
        "<svg id=\"graph\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"identity graph\">",
        w = right_x + right_w + MARGIN,
        h = rows * ROW + 2 * MARGIN,
    );
    // Edges first, so that nodes are drawn over their ends.
    s.push_str("<g class=\"edges\">\n");
    for e in &p.edges {
        let (Some(&y1), Some(&y2)) = (id_y.get(e.from.as_str()), route_y.get(e.to.as_str())) else {
            continue;
        };
        // A refusal can share its pair with a grant: drawn beside it, not over it.
        let dy = if e.kind == EdgeKind::ObservedDenied {
            4
        } else {
            0
        };
        let (x1, x2) = (MARGIN + left_w, right_x);
        let mid = (x1 + x2) / 2;
        let kind = kind_name(e.kind);
        let _ = writeln!(
            s,
            "<path class=\"edge {kind}\" data-edge-from=\"{from}\" data-edge-to=\"{to}\" data-kind=\"{kind}\" d=\"M{x1} {a} C{mid} {a} {mid} {b} {x2} {b}\"><title>{title}</title></path>",
            from = text(&e.from),
            to = text(&e.to),
            a = y1 + dy,
            b = y2 + dy,
            title = text(&format!(
                "{} -> {}: {} ({} allowed, {} refused)",
                e.from,
                e.to,
                kind_text(e.kind),
                e.allowed,
                e.denied
            )),
        );
    }
    s.push_str("</g>\n<g class=\"nodes\">\n");
    for (y, zone) in &id_heads {
        heading(s, MARGIN, *y, zone, colour(zone));
    }
    for (y, zone) in &route_heads {
        heading(s, right_x, *y, zone, colour(zone));
    }
    for i in &p.identities {
        let Some(&y) = id_y.get(i.id.as_str()) else {
            continue;
        };
        let mut class = format!("node identity kind-{}", i.kind);
        if i.shared {
            class.push_str(" shared");
        }
        let title = format!(
            "{} ({}, zone {}): reaches {} route(s) in {} zone(s){}",
            i.id,
            i.kind,
            i.zone,
            i.routes,
            i.zones,
            if i.shared { "; shared" } else { "" }
        );
        node(
            s,
            &class,
            "identity",
            &i.id,
            &title,
            MARGIN,
            y,
            left_w,
            colour(&i.zone),
        );
    }
    for r in &p.routes {
        let Some(&y) = route_y.get(r.id.as_str()) else {
            continue;
        };
        node(
            s,
            "node route",
            "route",
            &r.id,
            &r.id,
            right_x,
            y,
            right_w,
            colour(&r.zone),
        );
    }
    s.push_str("</g>\n</svg>\n");
}

fn heading(s: &mut String, x: usize, y: usize, zone: &str, colour: &str) {
    let _ = writeln!(
        s,
        "<text class=\"zone\" x=\"{x}\" y=\"{}\" fill=\"{colour}\">zone {}</text>",
        y + ROW - 8,
        text(zone)
    );
}

#[allow(clippy::too_many_arguments)]
fn node(
    s: &mut String,
    class: &str,
    kind: &str,
    id: &str,
    title: &str,
    x: usize,
    y: usize,
    w: usize,
    colour: &str,
) {
    let _ = writeln!(
        s,
        "<g class=\"{class}\" data-type=\"{kind}\" data-node=\"{id}\" tabindex=\"0\"><title>{title}</title><rect x=\"{x}\" y=\"{top}\" width=\"{w}\" height=\"{h}\" rx=\"4\" stroke=\"{colour}\"/><text x=\"{tx}\" y=\"{ty}\">{label}</text></g>",
        id = text(id),
        title = text(title),
        top = y - ROW / 2 + 2,
        h = ROW - 4,
        tx = x + 8,
        ty = y + 4,
        label = text(&label(id)),
    );
}

fn kind_name(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::GrantedUsed => "granted-used",
        EdgeKind::Stale => "stale",
        EdgeKind::ObservedUngranted => "observed-ungranted",
        EdgeKind::ObservedDenied => "observed-denied",
    }
}

fn kind_text(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::GrantedUsed => "granted, used",
        EdgeKind::Stale => "granted, never used (stale)",
        EdgeKind::ObservedUngranted => "used, not granted by the current policy",
        EdgeKind::ObservedDenied => "refused attempts",
    }
}

fn table(s: &mut String, p: &Picture) {
    s.push_str(
        "<table id=\"identities\">\n<thead><tr><th>identity</th><th>zone</th><th>kind</th>\
         <th>routes reached</th><th>zones reached</th><th>grant classes</th><th>shared</th>\
         <th>allowed</th><th>refused</th><th>stale grants</th></tr></thead>\n<tbody>\n",
    );
    for i in &p.identities {
        row(s, i);
    }
    s.push_str("</tbody>\n</table>\n");
}

fn row(s: &mut String, i: &IdentityNode) {
    let shared = if i.shared {
        format!(
            "yes: {} peer IPs, {} certificates at once",
            i.peak_peer_ips, i.peak_cert_serials
        )
    } else {
        "no".to_string()
    };
    let stale: String = i
        .stale
        .iter()
        .map(|r| format!("<li>{}</li>", text(r)))
        .collect();
    let _ = writeln!(
        s,
        "<tr data-identity=\"{id}\"><td class=\"id\">{id}</td><td data-field=\"zone\">{zone}</td>\
         <td data-field=\"kind\">{kind}</td><td data-field=\"routes\">{routes}</td>\
         <td data-field=\"zones\">{zones}</td><td data-field=\"grants\">{grants}</td>\
         <td data-field=\"shared\">{shared}</td><td data-field=\"allowed\">{allowed}</td>\
         <td data-field=\"denied\">{denied}</td><td data-field=\"stale\"><ul>{stale}</ul></td></tr>",
        id = text(&i.id),
        zone = text(&i.zone),
        kind = i.kind,
        routes = i.routes,
        zones = i.zones,
        grants = i.grants,
        allowed = i.allowed,
        denied = i.denied,
    );
}

const STYLE: &str = r#"
body { font: 14px system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.3em; }
svg text { font: 12px ui-monospace, monospace; }
text.zone { font-weight: bold; }
.node rect { fill: #fff; stroke-width: 2; }
.node.shared rect { fill: #fde2e2; }
.node.kind-pattern text { font-style: italic; }
.node { cursor: pointer; }
.edge { fill: none; stroke-width: 1.6; }
.edge.granted-used { stroke: #2e7d32; }
.edge.stale { stroke: #9e9e9e; stroke-dasharray: 6 4; }
.edge.observed-ungranted { stroke: #6a1b9a; }
.edge.observed-denied { stroke: #c62828; stroke-dasharray: 2 3; }
body.focus .edge:not(.lit), body.focus .node:not(.lit) { opacity: 0.15; }
body.focus .edge.lit { stroke-width: 3; }
.key { padding: 0 0.4em; border-bottom: 3px solid; }
.key.granted-used { border-color: #2e7d32; }
.key.stale { border-color: #9e9e9e; border-bottom-style: dashed; }
.key.observed-ungranted { border-color: #6a1b9a; }
.key.observed-denied { border-color: #c62828; border-bottom-style: dotted; }
.key.shared { background: #fde2e2; border: 0; }
table { border-collapse: collapse; margin-top: 1em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
td.id { font-family: ui-monospace, monospace; cursor: pointer; }
tr.lit { background: #fff8c4; }
td ul { margin: 0; padding-left: 1.2em; }
#details { border: 1px solid #ccc; padding: 0.5em 1em; margin: 1em 0; }
"#;

/// Selecting an identity (a click on its node or its row, or the page's `#fragment`) lights its
/// edges and the routes they reach, and lists them with their refused requests. Text only ever
/// goes in through `textContent`, and elements are compared by attribute value, never found by
/// a selector built from input.
const SCRIPT: &str = r#"
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("zone-data").textContent);
  var byId = {};
  data.identities.forEach(function (n) { byId[n.id] = n; });
  var kinds = {
    "granted-used": "granted, used",
    "stale": "granted, never used (stale)",
    "observed-ungranted": "used, not granted by the current policy",
    "observed-denied": "refused attempts"
  };
  function all(selector) { return Array.prototype.slice.call(document.querySelectorAll(selector)); }
  function add(parent, tag, content) {
    var el = document.createElement(tag);
    if (content !== undefined) { el.textContent = content; }
    parent.appendChild(el);
    return el;
  }
  function select(id) {
    var node = Object.prototype.hasOwnProperty.call(byId, id) ? byId[id] : null;
    var edges = node ? data.edges.filter(function (e) { return e.from === id; }) : [];
    var reached = {};
    edges.forEach(function (e) { reached[e.to] = true; });
    document.body.classList.toggle("focus", node !== null);
    all(".edge").forEach(function (el) {
      el.classList.toggle("lit", node !== null && el.getAttribute("data-edge-from") === id);
    });
    all(".node").forEach(function (el) {
      var name = el.getAttribute("data-node");
      var lit = el.getAttribute("data-type") === "identity" ? name === id : reached[name] === true;
      el.classList.toggle("lit", node !== null && lit);
    });
    all("tr[data-identity]").forEach(function (el) {
      el.classList.toggle("lit", node !== null && el.getAttribute("data-identity") === id);
    });
    var details = document.getElementById("details");
    details.textContent = "";
    details.hidden = node === null;
    if (node === null) { return; }
    add(details, "h2", node.id).className = "id";
    add(details, "p", "zone " + node.zone + " (" + node.kind + "): reaches " + node.routes +
      " route(s) in " + node.zones + " zone(s), " + node.grants + " grant class(es)" +
      (node.shared ? "; shared: " + node.peak_peer_ips + " peer IPs, " +
        node.peak_cert_serials + " certificates at once" : ""));
    var list = add(details, "ul");
    edges.forEach(function (e) {
      var item = add(list, "li", e.to + ": " + kinds[e.kind] + " (" + e.allowed + " allowed, " +
        e.denied + " refused)");
      item.setAttribute("data-edge-to", e.to);
      item.setAttribute("data-kind", e.kind);
      if (e.samples.length > 0) {
        var samples = add(item, "ul");
        e.samples.forEach(function (sample) { add(samples, "li", sample).className = "sample"; });
      }
    });
  }
  function selected() {
    try { return decodeURIComponent(location.hash.slice(1)); } catch (e) { return null; }
  }
  function fromHash() { select(selected()); }
  // A second click on the selected identity clears the selection.
  function choose(id) { location.hash = selected() === id ? "" : encodeURIComponent(id); }
  all('.node[data-type="identity"]').forEach(function (el) {
    el.addEventListener("click", function () { choose(el.getAttribute("data-node")); });
  });
  all("tr[data-identity] td.id").forEach(function (el) {
    el.addEventListener("click", function () {
      choose(el.parentNode.getAttribute("data-identity"));
    });
  });
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
"#;

#[cfg(test)]
mod tests;
