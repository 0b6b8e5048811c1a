//! The dependency graph of the loaded units, with every edge in both directions.

use std::collections::{BTreeMap, BTreeSet};

use crate::loader::{Loaded, UnitSet};
use crate::unit_file::UnitKind;

type Edges = BTreeMap<String, BTreeSet<String>>;

#[derive(Debug, Default, Clone)]
pub struct Graph {
    /// `after[u]` = units u starts after (u's `After=` plus others' `Before=u`).
    pub after: Edges,
    /// Reverse of `after`.
    pub before: Edges,
    pub requires: Edges,
    pub required_by: Edges,
    pub wants: Edges,
    pub binds_to: Edges,
    pub bound_by: Edges,
    /// Symmetric.
    pub conflicts: Edges,
    pub on_failure: Edges,
}

fn add(e: &mut Edges, a: &str, b: &str) {
    if a != b {
        e.entry(a.to_string()).or_default().insert(b.to_string());
    }
}

pub fn get<'a>(e: &'a Edges, u: &str) -> impl Iterator<Item = &'a String> + 'a {
    e.get(u).into_iter().flatten()
}

impl Graph {
    pub fn build(set: &UnitSet) -> Graph {
        let mut g = Graph::default();
        for (name, l) in &set.units {
            let Loaded::Ok(d) = l else { continue };
            for v in &d.deps.after {
                g.add_order(name, v);
            }
            for v in &d.deps.before {
                g.add_order(v, name);
            }
            for v in &d.deps.requires {
                g.add_requires(name, v);
            }
            for v in &d.deps.wants {
                add(&mut g.wants, name, v);
            }
            for v in &d.deps.binds_to {
                add(&mut g.binds_to, name, v);
                add(&mut g.bound_by, v, name);
            }
            for v in &d.deps.conflicts {
                add(&mut g.conflicts, name, v);
                add(&mut g.conflicts, v, name);
            }
            for v in &d.deps.on_failure {
                add(&mut g.on_failure, name, v);
            }
        }
        for (t, u) in &set.enabled_wants {
            add(&mut g.wants, t, u);
        }
        for (t, u) in &set.enabled_requires {
            g.add_requires(t, u);
        }
        // Targets are reached after what they pull in (systemd.target(5)), unless the pulled
        // unit says DefaultDependencies=no or is itself ordered after the target.
        for (name, l) in &set.units {
            let Loaded::Ok(d) = l else { continue };
            if d.kind != UnitKind::Target || !d.default_dependencies {
                continue;
            }
            let pulled: Vec<String> = get(&g.wants, name)
                .chain(get(&g.requires, name))
                .chain(get(&g.binds_to, name))
                .cloned()
                .collect();
            for u in pulled {
                let opted_out =
                    matches!(set.units.get(&u), Some(Loaded::Ok(ud)) if !ud.default_dependencies);
                let loop_ = g.after.get(&u).is_some_and(|s| s.contains(name));
                if !opted_out && !loop_ {
                    g.add_order(name, &u);
                }
            }
        }
        g
    }

    /// `a` After `b`.
    fn add_order(&mut self, a: &str, b: &str) {
        add(&mut self.after, a, b);
        add(&mut self.before, b, a);
    }

    fn add_requires(&mut self, a: &str, b: &str) {
        add(&mut self.requires, a, b);
        add(&mut self.required_by, b, a);
    }

    /// An ordering cycle among `nodes`, as the list of units around it (first repeated at
    /// the end), if there is one.
    pub fn find_cycle(&self, nodes: &BTreeSet<String>) -> Option<Vec<String>> {
        // 0 = unvisited, 1 = on the stack, 2 = done
        let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
        let mut stack: Vec<&str> = Vec::new();
        fn visit<'a>(
            g: &'a Graph,
            nodes: &'a BTreeSet<String>,
            u: &'a str,
            mark: &mut BTreeMap<&'a str, u8>,
            stack: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            mark.insert(u, 1);
            stack.push(u);
            for v in get(&g.after, u) {
                if !nodes.contains(v) {
                    continue;
                }
                match mark.get(v.as_str()) {
                    Some(1) => {
                        let start = stack.iter().position(|x| *x == v.as_str()).unwrap_or(0);
                        let mut cyc: Vec<String> =
                            stack[start..].iter().map(|s| s.to_string()).collect();
                        cyc.push(v.clone());
                        return Some(cyc);
                    }
                    Some(_) => {}
                    None => {
                        if let Some(c) = visit(g, nodes, v, mark, stack) {
                            return Some(c);
                        }
                    }
                }
            }
            stack.pop();
            mark.insert(u, 2);
            None
        }
        for n in nodes {
            if !mark.contains_key(n.as_str()) {
                if let Some(c) = visit(self, nodes, n, &mut mark, &mut stack) {
                    return Some(c);
                }
            }
        }
        None
    }
}
