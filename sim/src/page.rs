//! A run's report page: one self-contained HTML file (inline SVG and CSS, no scripts, no
//! network) with a timeline of the servers (who led which term, votes, snapshots, restarts),
//! the nemesis' faults and heals, and every client operation as a bar from invoke to
//! completion coloured by outcome; the operations the failing checker names are outlined in red
//! and listed at the top with the verdict and the replay command.

use crate::history::{Op, Outcome, RegOp};
use std::fmt::Write as _;
use zraft::server::observer::Observation;

/// What a page shows.
pub struct Page<'a> {
    pub scenario: &'a str,
    pub seed: u64,
    pub nodes: u64,
    pub build: &'a str,
    /// The first failure (or "ok").
    pub verdict: &'a str,
    /// Every checker's verdict, one per line.
    pub verdicts: &'a str,
    pub replay: &'a str,
    pub history: &'a [Op],
    /// Nemesis trace lines, "<ms>ms <what>".
    pub trace: &'a [String],
    /// What servers reported, with simulated nanoseconds since the workload started.
    pub servers: &'a [(u64, Observation)],
}

const W: f64 = 1400.0;
const LEFT: f64 = 110.0;
const LANE: f64 = 18.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Colour of a term: hues spread so that neighbouring terms differ.
fn term_colour(term: u64) -> String {
    format!("hsl({}, 65%, 55%)", (term * 67) % 360)
}

/// The server a nemesis line names first (`zraft-3` → 3).
fn named_server(line: &str) -> Option<u64> {
    let i = line.find("zraft-")?;
    let digits: String = line[i + 6..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The trace line's time in ns and its text.
fn trace_time(line: &str) -> Option<(u64, &str)> {
    let (ms, what) = line.split_once("ms ")?;
    Some((ms.parse::<u64>().ok()? * 1_000_000, what))
}

impl Page<'_> {
    /// Operations the verdict names (their debug form appears in it).
    pub fn culprits(&self) -> Vec<&Op> {
        self.history
            .iter()
            .filter(|o| self.verdict.contains(&format!("{o:?}")))
            .collect()
    }

    fn end_ns(&self) -> u64 {
        let ops = self.history.iter().flat_map(|o| [o.invoke, o.complete.unwrap_or(0)]);
        let trace = self.trace.iter().filter_map(|l| trace_time(l)).map(|(t, _)| t);
        let servers = self.servers.iter().map(|(t, _)| *t);
        ops.chain(trace).chain(servers).max().unwrap_or(1).max(1)
    }

    /// The page.
    pub fn html(&self) -> String {
        let end = self.end_ns();
        let x = |t: u64| LEFT + (W - LEFT - 10.0) * t as f64 / end as f64;
        let mut clients: Vec<u32> = self.history.iter().map(|o| o.client).collect();
        clients.sort();
        clients.dedup();
        let server_top = 40.0;
        let nemesis_top = server_top + self.nodes as f64 * LANE + 10.0;
        let client_top = nemesis_top + LANE + 20.0;
        let height = client_top + clients.len() as f64 * LANE + 20.0;
        let mut svg = String::new();
        let _ = write!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"timeline\" viewBox=\"0 0 {W} {height}\" width=\"100%\" font-size=\"11\">"
        );
        // Time axis, one tick per simulated second.
        let secs = end / 1_000_000_000;
        let step = (secs / 20).max(1);
        for s in (0..=secs).step_by(step as usize) {
            let px = x(s * 1_000_000_000);
            let _ = write!(
                svg,
                "<line x1=\"{px:.1}\" y1=\"25\" x2=\"{px:.1}\" y2=\"{height}\" stroke=\"#eee\"/><text x=\"{px:.1}\" y=\"20\" text-anchor=\"middle\">{s}s</text>"
            );
        }
        // Servers: lanes, leadership spans coloured by term (until another term is led), events.
        for n in 1..=self.nodes {
            let y = server_top + (n - 1) as f64 * LANE;
            let _ = write!(
                svg,
                "<text x=\"4\" y=\"{:.1}\">zraft-{n}</text><rect x=\"{LEFT}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f6f6f6\"/>",
                y + 12.0,
                W - LEFT - 10.0,
                LANE - 3.0
            );
        }
        let mut leads: Vec<(u64, u64, u64)> = vec![]; // (start, node, term)
        for (t, o) in self.servers {
            if let Observation::Leader { node, term } = o {
                if leads.last().is_none_or(|l| l.2 != *term) {
                    leads.push((*t, *node, *term));
                }
            }
        }
        for (i, &(start, node, term)) in leads.iter().enumerate() {
            let stop = leads.get(i + 1).map_or(end, |l| l.0);
            let y = server_top + (node.max(1) - 1) as f64 * LANE;
            let _ = write!(
                svg,
                "<rect class=\"lead\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>zraft-{node} leader of term {term}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#fff\">T{term}</text>",
                x(start),
                (x(stop) - x(start)).max(1.0),
                LANE - 3.0,
                term_colour(term),
                x(start) + 2.0,
                y + 11.0
            );
        }
        for (t, o) in self.servers {
            let (node, what, colour) = match o {
                Observation::Recovered { node, term, vote } => {
                    (*node, format!("started from disk: term {term}, vote {vote}"), "#333")
                }
                Observation::Snapshot { node, index, installed } => (
                    *node,
                    format!(
                        "snapshot at {index}{}",
                        if *installed { " installed" } else { " taken" }
                    ),
                    "#06c",
                ),
                Observation::Event { node, what } => (*node, what.to_string(), "#999"),
                _ => continue,
            };
            let y = server_top + (node.max(1) - 1) as f64 * LANE;
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{colour}\"><title>{:.3}s zraft-{node}: {}</title></circle>",
                x(*t),
                y + 7.5,
                *t as f64 / 1e9,
                esc(&what)
            );
        }
        // The nemesis: a mark per fault on the server it names (or the network lane), green heals.
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{:.1}\">nemesis</text><rect x=\"{LEFT}\" y=\"{nemesis_top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f6f6f6\"/>",
            nemesis_top + 12.0,
            W - LEFT - 10.0,
            LANE - 3.0
        );
        for line in self.trace {
            let Some((t, what)) = trace_time(line) else { continue };
            let heal = what.starts_with("heal");
            let (y0, y1, colour) = if heal {
                (server_top, nemesis_top + LANE, "#2a2")
            } else if let Some(n) = named_server(what).filter(|n| (1..=self.nodes).contains(n)) {
                let y = server_top + (n - 1) as f64 * LANE;
                (y, y + LANE - 3.0, "#d00")
            } else {
                (nemesis_top, nemesis_top + LANE - 3.0, "#d00")
            };
            let _ = write!(
                svg,
                "<line class=\"fault\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{y0:.1}\" y2=\"{y1:.1}\" stroke=\"{colour}\" stroke-width=\"2\"><title>{1}</title></line><rect x=\"{2:.1}\" y=\"{3:.1}\" width=\"4\" height=\"{4:.1}\" fill=\"{colour}\" opacity=\"0.5\"><title>{1}</title></rect>",
                x(t),
                esc(line),
                x(t) - 2.0,
                nemesis_top,
                LANE - 3.0
            );
        }
        // Clients: one bar per operation; unknown outcomes run to the end, grey. A dashed red
        // line across every lane marks when each operation the verdict names was invoked.
        let culprits = self.culprits();
        for o in &culprits {
            let _ = write!(
                svg,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"25\" y2=\"{height}\" stroke=\"#e00\" stroke-dasharray=\"4 3\"/>",
                x(o.invoke)
            );
        }
        for (row, c) in clients.iter().enumerate() {
            let y = client_top + row as f64 * LANE;
            let _ = write!(svg, "<text x=\"4\" y=\"{:.1}\">client {c}</text>", y + 12.0);
        }
        for o in self.history {
            let row = clients.binary_search(&o.client).unwrap_or(0);
            let y = client_top + row as f64 * LANE;
            let (fill, stop) = match (&o.outcome, o.complete) {
                (_, None) => ("#bbb", end),
                (Outcome::Fail | Outcome::Error(_), Some(c)) => ("#f90", c),
                (_, Some(c)) => ("#4a4", c),
            };
            let mark = matches!(o.op, RegOp::Connected | RegOp::WatchEvent | RegOp::OutOfOrder);
            let culprit = culprits.iter().any(|c| std::ptr::eq(*c, o));
            let (stroke, class) = if culprit {
                (" stroke=\"#e00\" stroke-width=\"3\"", " culprit")
            } else {
                ("", "")
            };
            let title = esc(&format!(
                "{:.3}s client {} session {:x} {} {:?} -> {:?} zxid {:x}{}",
                o.invoke as f64 / 1e9,
                o.client,
                o.session,
                o.key,
                o.op,
                o.outcome,
                o.zxid,
                o.complete.map_or(" (unknown outcome)".to_string(), |c| format!(
                    " done {:.3}s",
                    c as f64 / 1e9
                ))
            ));
            if mark {
                let _ = write!(
                    svg,
                    "<circle class=\"mark{class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"#609\"{stroke}><title>{title}</title></circle>",
                    x(o.invoke),
                    y + 7.5
                );
            } else {
                let _ = write!(
                    svg,
                    "<rect class=\"op{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\"{stroke}><title>{title}</title></rect>",
                    x(o.invoke),
                    y + 2.0,
                    (x(stop) - x(o.invoke)).max(1.0),
                    LANE - 7.0
                );
            }
        }
        svg.push_str("</svg>");

        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{} seed {}</title><style>\
             body{{font:13px sans-serif;margin:1.5em}}pre{{background:#f6f6f6;padding:.5em;overflow-x:auto}}\
             .bad{{color:#b00}}.ok{{color:#080}}.legend span{{display:inline-block;width:12px;height:10px;margin:0 4px 0 12px}}\
             </style></head><body>",
            esc(self.scenario),
            self.seed
        );
        let ok = self.verdict == "ok";
        let _ = write!(
            h,
            "<h1>{} seed {}</h1><p>build {} &middot; {} servers &middot; {} client operations</p>\
             <p id=\"verdict\" class=\"{}\"><b>{}</b></p><p>replay: <code>{}</code></p>",
            esc(self.scenario),
            self.seed,
            esc(self.build),
            self.nodes,
            self.history.len(),
            if ok { "ok" } else { "bad" },
            esc(self.verdict),
            esc(self.replay)
        );
        if !culprits.is_empty() {
            h.push_str("<h2>The operations the verdict names (outlined in red below)</h2><ul id=\"culprits\">");
            for o in &culprits {
                let _ = write!(h, "<li><code>{}</code></li>", esc(&format!("{o:?}")));
            }
            h.push_str("</ul>");
        }
        h.push_str(
            "<p class=\"legend\">Servers: leadership coloured by term (T<i>n</i>), dots for restarts, \
             snapshots and events. Nemesis: red faults (on the server they name), green heals. Clients:\
             <span style=\"background:#4a4\"></span>ok<span style=\"background:#f90\"></span>failed\
             <span style=\"background:#bbb\"></span>unknown outcome<span style=\"background:#609\"></span>\
             connection or watch event. Hover for details.</p>",
        );
        h.push_str(&svg);
        let _ = writeln!(
            h,
            "<h2>Checkers</h2><pre>{}</pre><details><summary>Nemesis trace ({} lines)</summary><pre>{}</pre></details></body></html>",
            esc(self.verdicts),
            self.trace.len(),
            esc(&self.trace.join("\n"))
        );
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, invoke: u64, complete: Option<u64>, outcome: Outcome) -> Op {
        Op {
            client,
            session: 7,
            key: "/k0".into(),
            op: RegOp::Write(1),
            invoke,
            complete,
            outcome,
            zxid: 0x100000002,
            seq: 0,
        }
    }

    #[test]
    fn the_page_draws_leaders_faults_and_operations_and_marks_the_culprit() {
        let history = vec![
            op(0, 1_000_000_000, Some(1_200_000_000), Outcome::Ok(None)),
            op(1, 2_000_000_000, None, Outcome::Info),
            op(1, 3_000_000_000, Some(3_100_000_000), Outcome::Fail),
        ];
        let verdict = format!("not linearizable on /k0: cannot place {:?}", history[2]);
        let trace = vec![
            "1500ms kill zraft-2".to_string(),
            "2500ms halves [1] | [2, 3]".to_string(),
            "4000ms heal".to_string(),
        ];
        let servers = vec![
            (100, Observation::Leader { node: 1, term: 1 }),
            (1_600_000_000, Observation::Leader { node: 3, term: 2 }),
            (
                1_700_000_000,
                Observation::Snapshot {
                    node: 3,
                    index: 40,
                    installed: false,
                },
            ),
        ];
        let page = Page {
            scenario: "swarm",
            seed: 9,
            nodes: 3,
            build: "abc",
            verdict: &verdict,
            verdicts: "linearizability: VIOLATED",
            replay: "cargo sim replay scenarios/swarm.toml --seed 9 --trace",
            history: &history,
            trace: &trace,
            servers: &servers,
        };
        assert_eq!(page.culprits(), vec![&history[2]]);
        let html = page.html();
        assert_eq!(html.matches("class=\"lead\"").count(), 2, "two terms led");
        assert!(html.contains("zraft-3 leader of term 2"));
        assert_eq!(html.matches("class=\"fault\"").count(), 3);
        assert_eq!(html.matches("class=\"op").count(), 3);
        assert_eq!(html.matches("class=\"op culprit\"").count(), 1);
        for tag in html.split('<').filter(|t| t.contains("class=")) {
            assert_eq!(
                tag.matches("class=").count(),
                1,
                "one class attribute per element: {tag}"
            );
        }
        assert!(html.contains("snapshot at 40 taken"));
        assert!(html.contains("id=\"culprits\""));
        assert!(html.contains("(unknown outcome)"));
        assert!(!html.contains("<script"), "no scripts");
        assert!(
            !html.contains("http://") || html.matches("http://").count() == 1,
            "only the SVG namespace"
        );
    }

    #[test]
    fn nemesis_lines_name_their_server() {
        assert_eq!(named_server("kill zraft-12 (window: x)"), Some(12));
        assert_eq!(named_server("halves [1] | [2]"), None);
        assert_eq!(trace_time("1500ms kill zraft-2"), Some((1_500_000_000, "kill zraft-2")));
        assert_eq!(trace_time("nonsense"), None);
    }
}
