//! Evaluation: conditions against an item, update actions applied to an item, projections.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::expr::{Action, Cmp, Cond, Operand, Path, PathElem, SetValue};
use super::value::{AttrValue, Item};

/// The value at `path` in `item`, if there is one.
pub fn resolve<'a>(item: &'a Item, path: &Path) -> Option<&'a AttrValue> {
    let mut elems = path.0.iter();
    let mut cur = match elems.next()? {
        PathElem::Name(n) => item.get(n)?,
        PathElem::Index(_) => return None,
    };
    for e in elems {
        cur = match (e, cur) {
            (PathElem::Name(n), AttrValue::M(m)) => m.get(n)?,
            (PathElem::Index(i), AttrValue::L(l)) => l.get(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// DynamoDB's ordering of two values of one scalar type (S, N, B); `None` across types.
pub fn compare(a: &AttrValue, b: &AttrValue) -> Option<Ordering> {
    match (a, b) {
        (AttrValue::S(x), AttrValue::S(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (AttrValue::N(x), AttrValue::N(y)) => Some(x.cmp(y)),
        (AttrValue::B(x), AttrValue::B(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn operand(item: &Item, op: &Operand) -> Option<AttrValue> {
    match op {
        Operand::Path(p) => resolve(item, p).cloned(),
        Operand::Value(v) => Some(v.clone()),
        Operand::Size(inner) => {
            let n = match operand(item, inner)? {
                AttrValue::S(s) => s.len(),
                AttrValue::B(b) => b.len(),
                AttrValue::SS(s) => s.len(),
                AttrValue::NS(s) => s.len(),
                AttrValue::BS(s) => s.len(),
                AttrValue::L(l) => l.len(),
                AttrValue::M(m) => m.len(),
                _ => return None,
            };
            Some(AttrValue::N(super::number::Num::from_i64(n as i64)))
        }
    }
}

/// Whether `item` (empty when there is none) satisfies `cond`.
pub fn eval(item: &Item, cond: &Cond) -> bool {
    match cond {
        Cond::Cmp(cmp, a, b) => {
            let (a, b) = (operand(item, a), operand(item, b));
            match cmp {
                Cmp::Eq => matches!((&a, &b), (Some(x), Some(y)) if x.equals(y)),
                // A missing operand is unequal to everything.
                Cmp::Ne => !matches!((&a, &b), (Some(x), Some(y)) if x.equals(y)),
                _ => {
                    let (Some(a), Some(b)) = (a, b) else {
                        return false;
                    };
                    match compare(&a, &b) {
                        Some(o) => match cmp {
                            Cmp::Lt => o == Ordering::Less,
                            Cmp::Le => o != Ordering::Greater,
                            Cmp::Gt => o == Ordering::Greater,
                            _ => o != Ordering::Less,
                        },
                        None => false,
                    }
                }
            }
        }
        Cond::Between(x, lo, hi) => {
            let (Some(x), Some(lo), Some(hi)) =
                (operand(item, x), operand(item, lo), operand(item, hi))
            else {
                return false;
            };
            compare(&x, &lo).is_some_and(|o| o != Ordering::Less)
                && compare(&x, &hi).is_some_and(|o| o != Ordering::Greater)
        }
        Cond::In(x, list) => {
            let Some(x) = operand(item, x) else {
                return false;
            };
            list.iter()
                .any(|o| operand(item, o).is_some_and(|v| v.equals(&x)))
        }
        Cond::And(a, b) => eval(item, a) && eval(item, b),
        Cond::Or(a, b) => eval(item, a) || eval(item, b),
        Cond::Not(a) => !eval(item, a),
        Cond::Exists(p) => resolve(item, p).is_some(),
        Cond::NotExists(p) => resolve(item, p).is_none(),
        Cond::Type(p, t) => match (resolve(item, p), operand(item, t)) {
            (Some(v), Some(AttrValue::S(t))) => v.type_name() == t,
            _ => false,
        },
        Cond::BeginsWith(a, b) => match (operand(item, a), operand(item, b)) {
            (Some(AttrValue::S(a)), Some(AttrValue::S(b))) => a.starts_with(&b),
            (Some(AttrValue::B(a)), Some(AttrValue::B(b))) => a.starts_with(&b),
            _ => false,
        },
        Cond::Contains(a, b) => match (operand(item, a), operand(item, b)) {
            (Some(AttrValue::S(a)), Some(AttrValue::S(b))) => a.contains(&b),
            (Some(AttrValue::B(a)), Some(AttrValue::B(b))) => {
                b.is_empty() || a.windows(b.len()).any(|w| w == b.as_slice())
            }
            (Some(AttrValue::SS(a)), Some(AttrValue::S(b))) => a.contains(&b),
            (Some(AttrValue::NS(a)), Some(AttrValue::N(b))) => a.contains(&b),
            (Some(AttrValue::BS(a)), Some(AttrValue::B(b))) => a.contains(&b),
            (Some(AttrValue::L(a)), Some(b)) => a.iter().any(|x| x.equals(&b)),
            _ => false,
        },
    }
}

const MISSING: &str =
    "The provided expression refers to an attribute that does not exist in the item";
const WRONG_TYPE: &str = "An operand in the update expression has an incorrect data type";
const BAD_PATH: &str = "The document path provided in the update expression is invalid for update";

fn set_value(item: &Item, v: &SetValue) -> Result<AttrValue, String> {
    match v {
        SetValue::Operand(op) => operand(item, op).ok_or_else(|| MISSING.to_string()),
        SetValue::IfNotExists(p, fallback) => match resolve(item, p) {
            Some(v) => Ok(v.clone()),
            None => set_value(item, fallback),
        },
        SetValue::ListAppend(a, b) => match (set_value(item, a)?, set_value(item, b)?) {
            (AttrValue::L(mut a), AttrValue::L(b)) => {
                a.extend(b);
                Ok(AttrValue::L(a))
            }
            _ => Err(WRONG_TYPE.into()),
        },
        SetValue::Plus(a, b) | SetValue::Minus(a, b) => {
            match (set_value(item, a)?, set_value(item, b)?) {
                (AttrValue::N(a), AttrValue::N(b)) => {
                    let b = if matches!(v, SetValue::Minus(..)) {
                        b.negate()
                    } else {
                        b
                    };
                    a.add(&b).map(AttrValue::N).map_err(|e| e.to_string())
                }
                _ => Err(WRONG_TYPE.into()),
            }
        }
    }
}

/// The container holding the last step of `path`, for writing.
fn parent_mut<'a>(item: &'a mut Item, path: &Path) -> Result<Option<&'a mut AttrValue>, String> {
    let elems = &path.0[..path.0.len() - 1];
    if elems.is_empty() {
        return Ok(None);
    }
    let PathElem::Name(first) = &elems[0] else {
        return Err(BAD_PATH.into());
    };
    let mut cur = item.get_mut(first).ok_or_else(|| BAD_PATH.to_string())?;
    for e in &elems[1..] {
        cur = match (e, cur) {
            (PathElem::Name(n), AttrValue::M(m)) => m.get_mut(n),
            (PathElem::Index(i), AttrValue::L(l)) => l.get_mut(*i),
            _ => None,
        }
        .ok_or_else(|| BAD_PATH.to_string())?;
    }
    Ok(Some(cur))
}

fn put_path(item: &mut Item, path: &Path, value: AttrValue) -> Result<(), String> {
    let last = path.0.last().expect("paths are never empty").clone();
    match (parent_mut(item, path)?, last) {
        (None, PathElem::Name(n)) => {
            item.insert(n, value);
        }
        (Some(AttrValue::M(m)), PathElem::Name(n)) => {
            m.insert(n, value);
        }
        (Some(AttrValue::L(l)), PathElem::Index(i)) => {
            if i < l.len() {
                l[i] = value;
            } else {
                l.push(value);
            }
        }
        _ => return Err(BAD_PATH.into()),
    }
    Ok(())
}

fn remove_path(item: &mut Item, path: &Path) -> Result<(), String> {
    let last = path.0.last().expect("paths are never empty").clone();
    let parent = match parent_mut(item, path) {
        Ok(p) => p,
        // Removing below something missing changes nothing.
        Err(_) => return Ok(()),
    };
    match (parent, last) {
        (None, PathElem::Name(n)) => {
            item.remove(&n);
        }
        (Some(AttrValue::M(m)), PathElem::Name(n)) => {
            m.remove(&n);
        }
        (Some(AttrValue::L(l)), PathElem::Index(i)) => {
            if i < l.len() {
                l.remove(i);
            }
        }
        _ => return Err(BAD_PATH.into()),
    }
    Ok(())
}

fn union<T: PartialEq + Clone>(mut a: Vec<T>, b: &[T]) -> Vec<T> {
    for x in b {
        if !a.contains(x) {
            a.push(x.clone());
        }
    }
    a
}

/// Applies update actions to a copy of `old` (empty for a new item). Right-hand sides read the
/// item as it was before the update.
pub fn apply_update(old: &Item, actions: &[Action]) -> Result<Item, String> {
    let mut item = old.clone();
    // List elements removed by index go highest first, so each index names the element it
    // named before the update.
    let mut ordered: Vec<&Action> = actions.iter().collect();
    ordered.sort_by(|a, b| match (a, b) {
        (Action::Remove(p), Action::Remove(q)) => q.cmp(p),
        _ => Ordering::Equal,
    });
    for action in ordered {
        match action {
            Action::Set(path, v) => {
                let value = set_value(old, v)?;
                put_path(&mut item, path, value)?;
            }
            Action::Remove(path) => remove_path(&mut item, path)?,
            Action::Add(path, v) => {
                let new = match (resolve(&item, path), v) {
                    (None, v) => v.clone(),
                    (Some(AttrValue::N(a)), AttrValue::N(b)) => {
                        AttrValue::N(a.add(b).map_err(|e| e.to_string())?)
                    }
                    (Some(AttrValue::SS(a)), AttrValue::SS(b)) => {
                        AttrValue::SS(union(a.clone(), b))
                    }
                    (Some(AttrValue::NS(a)), AttrValue::NS(b)) => {
                        AttrValue::NS(union(a.clone(), b))
                    }
                    (Some(AttrValue::BS(a)), AttrValue::BS(b)) => {
                        AttrValue::BS(union(a.clone(), b))
                    }
                    _ => return Err(WRONG_TYPE.into()),
                };
                put_path(&mut item, path, new)?;
            }
            Action::Delete(path, v) => {
                let new = match (resolve(&item, path), v) {
                    (None, _) => continue,
                    (Some(AttrValue::SS(a)), AttrValue::SS(b)) => {
                        AttrValue::SS(a.iter().filter(|x| !b.contains(x)).cloned().collect())
                    }
                    (Some(AttrValue::NS(a)), AttrValue::NS(b)) => {
                        AttrValue::NS(a.iter().filter(|x| !b.contains(x)).cloned().collect())
                    }
                    (Some(AttrValue::BS(a)), AttrValue::BS(b)) => {
                        AttrValue::BS(a.iter().filter(|x| !b.contains(x)).cloned().collect())
                    }
                    _ => return Err(WRONG_TYPE.into()),
                };
                let empty = match &new {
                    AttrValue::SS(s) => s.is_empty(),
                    AttrValue::NS(s) => s.is_empty(),
                    AttrValue::BS(s) => s.is_empty(),
                    _ => false,
                };
                if empty {
                    remove_path(&mut item, path)?;
                } else {
                    put_path(&mut item, path, new)?;
                }
            }
        }
    }
    Ok(item)
}

enum Tree {
    Leaf(AttrValue),
    Map(BTreeMap<String, Tree>),
    List(BTreeMap<usize, Tree>),
}

fn insert_tree(node: &mut Tree, rest: &[PathElem], value: &AttrValue) {
    let Some((first, rest)) = rest.split_first() else {
        *node = Tree::Leaf(value.clone());
        return;
    };
    match first {
        PathElem::Name(n) => {
            if !matches!(node, Tree::Map(_)) {
                *node = Tree::Map(BTreeMap::new());
            }
            if let Tree::Map(m) = node {
                let child = m
                    .entry(n.clone())
                    .or_insert_with(|| Tree::Map(BTreeMap::new()));
                insert_tree(child, rest, value);
            }
        }
        PathElem::Index(i) => {
            if !matches!(node, Tree::List(_)) {
                *node = Tree::List(BTreeMap::new());
            }
            if let Tree::List(l) = node {
                let child = l.entry(*i).or_insert_with(|| Tree::Map(BTreeMap::new()));
                insert_tree(child, rest, value);
            }
        }
    }
}

fn tree_value(t: Tree) -> AttrValue {
    match t {
        Tree::Leaf(v) => v,
        Tree::Map(m) => AttrValue::M(m.into_iter().map(|(k, v)| (k, tree_value(v))).collect()),
        Tree::List(l) => AttrValue::L(l.into_values().map(tree_value).collect()),
    }
}

/// The parts of `item` that `paths` name, nested as in the item (list elements compacted).
pub fn project(item: &Item, paths: &[Path]) -> Item {
    let mut root = Tree::Map(BTreeMap::new());
    for p in paths {
        if let Some(v) = resolve(item, p) {
            insert_tree(&mut root, &p.0, v);
        }
    }
    match tree_value(root) {
        AttrValue::M(m) => m,
        _ => Item::new(),
    }
}
