//! What an `apply` changes, and whether a change would break what is already served.

use std::fmt;

use crate::definitions::{FeatureView, Repo};

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `entity`, `source`, `view`, `service` or `offer`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// What changed (empty for additions and removals).
    pub details: Vec<String>,
}

/// The difference between the registered definitions and new ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Definitions that are new.
    pub added: Vec<Change>,
    /// Definitions that exist and change compatibly.
    pub changed: Vec<Change>,
    /// Definitions that go away.
    pub removed: Vec<Change>,
    /// Changes that would break readers of a registered view; the apply is refused while any.
    pub breaking: Vec<String>,
}

impl Plan {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    /// Compares `new` with the registered `old` (none on the first apply). Removing a registered
    /// view is breaking unless `prune`.
    pub fn between(old: &Repo, new: &Repo, prune: bool) -> Self {
        let mut plan = Self::default();
        diff(&mut plan, "entity", &old.entities, &new.entities, |a, b| {
            let mut d = Vec::new();
            if a.join_keys != b.join_keys || a.value_type != b.value_type {
                d.push(format!("key {:?} {} → {:?} {}", a.join_keys, a.value_type, b.join_keys, b.value_type));
            }
            if a.description != b.description {
                d.push("description".into());
            }
            d
        });
        diff(&mut plan, "source", &old.sources, &new.sources, |a, b| {
            let mut d = Vec::new();
            if a.kind != b.kind {
                d.push("definition".into());
            }
            if a.description != b.description {
                d.push("description".into());
            }
            d
        });
        diff(&mut plan, "view", &old.views, &new.views, view_changes);
        diff(&mut plan, "service", &old.services, &new.services, |a, b| {
            let mut d = Vec::new();
            if a.features != b.features {
                d.push(format!("features ({} → {})", a.features.len(), b.features.len()));
            }
            if a.owner != b.owner || a.description != b.description {
                d.push("owner or description".into());
            }
            d
        });
        diff(&mut plan, "offer", &old.offers, &new.offers, |a, b| {
            let mut d = Vec::new();
            if a.categories != b.categories {
                d.push(format!("categories {:?} → {:?}", a.categories, b.categories));
            }
            if a.description != b.description {
                d.push("description".into());
            }
            d
        });
        for (name, old_view) in &old.views {
            match new.views.get(name) {
                Some(new_view) => breaking_view_changes(old_view, new_view, old, new, &mut plan.breaking),
                None if !prune => plan.breaking.push(format!(
                    "removing view `{name}` would break its readers; pass --prune to remove registered views"
                )),
                None => {}
            }
        }
        for (name, e) in &old.entities {
            if let Some(n) = new.entities.get(name)
                && (e.join_keys != n.join_keys || e.value_type != n.value_type)
                && old.views.values().any(|v| &v.entity == name)
            {
                plan.breaking.push(format!(
                    "entity `{name}`: changing its key breaks the views of it; define a new entity instead"
                ));
            }
        }
        plan
    }
}

fn diff<T>(
    plan: &mut Plan,
    kind: &'static str,
    old: &std::collections::BTreeMap<String, T>,
    new: &std::collections::BTreeMap<String, T>,
    changes: impl Fn(&T, &T) -> Vec<String>,
) {
    for (name, n) in new {
        match old.get(name) {
            None => plan.added.push(Change { kind, name: name.clone(), details: Vec::new() }),
            Some(o) => {
                let details = changes(o, n);
                if !details.is_empty() {
                    plan.changed.push(Change { kind, name: name.clone(), details });
                }
            }
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        plan.removed.push(Change { kind, name: name.clone(), details: Vec::new() });
    }
}

fn view_changes(a: &FeatureView, b: &FeatureView) -> Vec<String> {
    let mut d = Vec::new();
    for (what, differs) in [
        ("entity", a.entity != b.entity),
        ("source", a.source != b.source),
        ("key_field", a.key_field != b.key_field),
        ("ttl", a.ttl != b.ttl),
        ("online", a.online != b.online),
        ("allowed_lateness", a.allowed_lateness != b.allowed_lateness),
        ("owner", a.owner != b.owner),
        ("tags", a.tags != b.tags),
        ("description", a.description != b.description),
    ] {
        if differs {
            d.push(what.to_string());
        }
    }
    for f in &b.features {
        match a.feature(&f.name) {
            None => d.push(format!("+ feature `{}`", f.name)),
            Some(old) if old != f => d.push(format!("~ feature `{}`", f.name)),
            Some(_) => {}
        }
    }
    for f in a.features.iter().filter(|f| b.feature(&f.name).is_none()) {
        d.push(format!("- feature `{}`", f.name));
    }
    d
}

fn breaking_view_changes(a: &FeatureView, b: &FeatureView, old: &Repo, new: &Repo, out: &mut Vec<String>) {
    let next = next_version(&a.name, new);
    let mut refuse = |what: String| {
        out.push(format!("view `{}`: {what} would break its readers; publish the change as `{next}`", a.name));
    };
    if a.entity != b.entity {
        refuse(format!("changing the entity ({} → {})", a.entity, b.entity));
    }
    if a.key_field != b.key_field {
        refuse("changing key_field".into());
    }
    let kind = |repo: &Repo, v: &FeatureView| repo.sources.get(&v.source).map(|s| s.kind.clone());
    if a.source != b.source && kind(old, a) != kind(new, b) {
        refuse(format!("changing the source ({} → {})", a.source, b.source));
    }
    for f in &a.features {
        match b.feature(&f.name) {
            None => refuse(format!("removing feature `{}`", f.name)),
            Some(n) if n.value_type != f.value_type => {
                refuse(format!("changing the type of `{}` ({} → {})", f.name, f.value_type, n.value_type));
            }
            Some(n) if n.kind != f.kind => refuse(format!("changing how `{}` is computed", f.name)),
            Some(_) => {}
        }
    }
}

/// The first free `@vN` name for a new version of `view`.
fn next_version(view: &str, repo: &Repo) -> String {
    let base = view.split_once('@').map_or(view, |(b, _)| b);
    (2..).map(|n| format!("{base}@v{n}")).find(|n| !repo.views.contains_key(n)).unwrap_or_default()
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "No changes.");
        }
        for c in &self.added {
            writeln!(f, "  + {} {}", c.kind, c.name)?;
        }
        for c in &self.changed {
            writeln!(f, "  ~ {} {}: {}", c.kind, c.name, c.details.join(", "))?;
        }
        for c in &self.removed {
            writeln!(f, "  - {} {}", c.kind, c.name)?;
        }
        writeln!(f, "{} to add, {} to change, {} to remove.", self.added.len(), self.changed.len(), self.removed.len())
    }
}
