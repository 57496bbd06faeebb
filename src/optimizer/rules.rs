//! The optimizer's rules. Each is a separate rewrite of the physical plan that records its
//! decision and the predicted costs of the alternatives it weighed; each is tested alone.

use super::plan::{cached_prefix, predict, Cost, Goal, LogicalPlan, PhysicalPlan};
use super::profile::CostProfile;
use crate::ops::{AudioOp, Commute, Decoder, Op, OpKind, SizeRule};
use crate::placement::pinned_range;

/// One rule's decision, for `explain`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    pub rule: &'static str,
    pub summary: String,
    /// What was weighed: a description and its predicted cost; the chosen one is marked.
    pub alternatives: Vec<(String, Cost, bool)>,
}

impl Decision {
    fn new(rule: &'static str, summary: String) -> Self {
        Decision {
            rule,
            summary,
            alternatives: Vec::new(),
        }
    }
}

/// Where an operator wants to be, by declared properties only: size-reducing operators first,
/// grayscale before other pixel operators (blur of one channel's worth), flips late (where they
/// fold into the tensor write), tensor operators last.
fn rank(op: &Op) -> u8 {
    let spec = op.spec();
    match (spec.size, spec.kind) {
        (_, _) if op.produces_tensor() => 4,
        (SizeRule::Fixed { .. } | SizeRule::ShorterSide { .. }, _) => 0,
        (_, OpKind::RandomGrayscale) => 1,
        (_, OpKind::RandomHorizontalFlip) => 3,
        _ => 2,
    }
}

/// May `a` (just before `b`) and `b` trade places?
fn may_swap(a: &Op, b: &Op, goal: &Goal) -> bool {
    match a.spec().commutes(b.spec().kind) {
        Some(Commute::Exact) => true,
        Some(Commute::Approx) => goal.allow_approx,
        None => false,
    }
}

/// *reorder*: bubble operators toward their rank, swapping only neighbours that declare they
/// commute (approximately only when allowed), never moving a fixed or pinned operator.
pub fn reorder(
    plan: &mut PhysicalPlan,
    logical: &LogicalPlan,
    profile: &CostProfile,
    goal: &Goal,
) -> Decision {
    let before = plan.clone();
    let movable = |i: usize| !logical.fixed[i] && logical.pins[i].is_none();
    let mut moves = Vec::new();
    let mut changed = true;
    while changed {
        changed = false;
        for p in 0..plan.order.len().saturating_sub(1) {
            let (a, b) = (plan.order[p], plan.order[p + 1]);
            let (oa, ob) = (&logical.ops[a], &logical.ops[b]);
            if rank(ob) < rank(oa) && movable(a) && movable(b) && may_swap(oa, ob, goal) {
                plan.order.swap(p, p + 1);
                moves.push(format!("{} after {}", oa.name(), ob.name()));
                changed = true;
            }
        }
    }
    // Fusion is what a reorder usually buys; price both orders with it on.
    let price = |p: &PhysicalPlan| {
        let mut p = p.clone();
        p.fuse = true;
        predict(&p, logical, profile, goal)
    };
    let (old, new) = (price(&before), price(plan));
    let names = |p: &PhysicalPlan| {
        p.ops(logical)
            .map(|o| o.name())
            .collect::<Vec<_>>()
            .join(" → ")
    };
    let mut d = Decision::new(
        "reorder",
        if moves.is_empty() {
            "declared order kept: no commuting neighbours out of rank".into()
        } else {
            format!("moved {} (declared commutations)", moves.join(", "))
        },
    );
    d.alternatives = vec![
        (
            format!("declared: {}", names(&before)),
            old,
            moves.is_empty(),
        ),
        (
            format!("reordered: {}", names(plan)),
            new,
            !moves.is_empty(),
        ),
    ];
    if new.step_ms > old.step_ms {
        // Never pay for a reorder.
        *plan = before;
        d.summary = "declared order kept: the reorder would not pay".into();
        d.alternatives[0].2 = true;
        d.alternatives[1].2 = false;
    }
    d
}

/// *fuse*: fold operators into one CPU loop where a fused kernel exists (crop/resize → flip →
/// Normalize/Cast writing the batch slot); GPU fusion (flip and a final crop+resize into the
/// tensor write) is done by the backend for any suffix.
pub fn fuse(
    plan: &mut PhysicalPlan,
    logical: &LogicalPlan,
    profile: &CostProfile,
    goal: &Goal,
) -> Decision {
    let mut off = plan.clone();
    off.fuse = false;
    plan.fuse = true;
    let cpu: Vec<Op> = plan.ops(logical).take(plan.cut).cloned().collect();
    let tail: Vec<&str> = cpu[crate::exec::fused_tail_start(&cpu, 0)..]
        .iter()
        .map(|o| o.name())
        .collect();
    let stretch_norm = cpu.windows(2).any(|w| {
        matches!(
            (&w[0], &w[1]),
            (
                Op::Audio(AudioOp::TimeStretch { .. }),
                Op::Audio(AudioOp::ComplexNorm { .. })
            )
        )
    });
    let mut d = Decision::new(
        "fuse",
        if tail.len() > 1 {
            format!("CPU: {} as one loop writing the batch slot", tail.join("+"))
        } else if stretch_norm {
            "CPU: TimeStretch+ComplexNorm as one step (magnitudes only; the profile times it so)"
                .into()
        } else {
            "CPU: nothing to fuse (no crop/flip directly before the tensor operator)".into()
        },
    );
    if plan.cut < plan.order.len() {
        d.summary += "; GPU: trailing flips and a final crop+resize fold into the tensor write";
    }
    if matches!(logical.decoder, Decoder::Image(_))
        && crate::exec::crop_into_decode(&cpu, plan.cut, true, false).is_some()
    {
        // Priced with the profile's window decode (`plan::decode_ns`).
        d.summary += "; decode: the leading crop is computed from the JPEG header and only the \
                      pixels it reads are decoded (same bytes; bench reports the count)";
        if goal.allow_approx {
            d.summary += ", at 1/2, 1/4 or 1/8 scale by the IDCT where the crop shrinks ≥ 2× \
                          (approximate: allowed)";
        }
    }
    d.alternatives = vec![
        (
            "unfused".into(),
            predict(&off, logical, profile, goal),
            false,
        ),
        ("fused".into(), predict(plan, logical, profile, goal), true),
    ];
    d
}

/// *place*: the CPU→GPU cut minimizing the predicted step (DESIGN.md's model, with the training
/// step as an input), within the range the pins allow and where every suffix operator has a GPU
/// kernel in the profile.
pub fn place(
    plan: &mut PhysicalPlan,
    logical: &LogicalPlan,
    profile: &CostProfile,
    goal: &Goal,
) -> Decision {
    let n = plan.order.len();
    // Pins are per declared operator; in executed order they bound the cut the same way.
    let ops: Vec<Op> = plan.ops(logical).cloned().collect();
    let pins: Vec<_> = plan.order.iter().map(|&i| logical.pins[i]).collect();
    let (lower, upper) = pinned_range(&ops, &pins).unwrap_or((n, n));
    let mut d = Decision::new("place", String::new());
    let mut best: Option<(usize, Cost)> = None;
    for cut in (lower..=upper).rev() {
        let runnable = profile.gpu.is_some()
            && plan.order[cut..]
                .iter()
                .all(|&i| profile.ops[i].gpu_ns.is_some());
        if cut < n && !runnable {
            continue;
        }
        let mut candidate = plan.clone();
        candidate.cut = cut;
        let cost = predict(&candidate, logical, profile, goal);
        let what = if cut == n {
            "all on CPU".to_string()
        } else {
            let crossing = if cut == 0 {
                match logical.decoder {
                    Decoder::Image(_) => "decoded u8 images".to_string(),
                    Decoder::Audio(_) => "decoded audio".to_string(),
                    Decoder::Text(_) => "token ids".to_string(),
                }
            } else {
                format!("{}'s output", ops[cut - 1].name())
            };
            format!(
                "GPU from {} ({} cross)",
                ops[cut..]
                    .iter()
                    .map(|o| o.name())
                    .collect::<Vec<_>>()
                    .join("+"),
                crossing
            )
        };
        d.alternatives.push((what, cost, false));
        // Strictly better only: ties keep more on the CPU (and the GPU free for training).
        if best.is_none_or(|(_, b)| cost.step_ms < b.step_ms * (1.0 - 1e-9)) {
            best = Some((cut, cost));
        }
    }
    let (cut, _) = best.unwrap_or((n, Cost::default()));
    plan.cut = cut;
    for alt in &mut d.alternatives {
        alt.2 = false;
    }
    let index = d
        .alternatives
        .iter()
        .position(|(w, _, _)| {
            if cut == n {
                w == "all on CPU"
            } else {
                w.starts_with(&format!("GPU from {}", ops[cut].name()))
            }
        })
        .unwrap_or(0);
    if let Some(alt) = d.alternatives.get_mut(index) {
        alt.2 = true;
    }
    let gpu = profile
        .gpu
        .as_ref()
        .map_or("no GPU in the profile".to_string(), |g| {
            format!("{} on {}", g.backend, g.name)
        });
    d.summary = if cut == n {
        format!("everything on the CPU ({gpu})")
    } else {
        format!("cut before {}: the suffix runs on {gpu}", ops[cut].name())
    };
    if lower > 0 || upper < n {
        d.summary += &format!(" [pins allow cuts {lower}..={upper}]");
    }
    d
}

/// *parallelism and prefetch*: one worker per core in the profile; enough batches in flight for
/// every worker to have one and one ready for the consumer (2..=8).
pub fn parallelism(
    plan: &mut PhysicalPlan,
    logical: &LogicalPlan,
    profile: &CostProfile,
    goal: &Goal,
) -> Decision {
    plan.threads = profile.cpu_threads.max(1);
    plan.prefetch = (plan.threads + 1).clamp(2, 8);
    // The controller may go further ahead at run time if the consumer still waits.
    plan.max_prefetch = (plan.prefetch * 2).min(16);
    let cost = predict(plan, logical, profile, goal);
    let mut d = Decision::new(
        "parallelism",
        format!(
            "{} worker threads, prefetch {} batches, adaptive up to {} ({:.1} ms of CPU per batch across the workers)",
            plan.threads, plan.prefetch, plan.max_prefetch, cost.cpu_ms
        ),
    );
    d.alternatives = vec![(format!("{} threads", plan.threads), cost, true)];
    d
}

/// *cache*: keep the deterministic prefix's output (decoded images, and the non-random operators
/// right after decode) in memory when it fits the budget and serving it is cheaper than redoing
/// it — from the second epoch on.
pub fn cache(
    plan: &mut PhysicalPlan,
    logical: &LogicalPlan,
    profile: &CostProfile,
    goal: &Goal,
) -> Decision {
    let prefix = cached_prefix(plan, logical);
    let mut without = plan.clone();
    without.cache_bytes = 0;
    let mut with = plan.clone();
    with.cache_bytes = goal.memory_budget_bytes;
    let (c0, c1) = (
        predict(&without, logical, profile, goal),
        predict(&with, logical, profile, goal),
    );
    let names: Vec<&str> = std::iter::once(logical.decoder.name())
        .chain(plan.order[..prefix].iter().map(|&i| logical.ops[i].name()))
        .collect();
    let kept = if prefix == 0 {
        profile.decoded_bytes
    } else {
        // Bytes after the prefix, from the measured sizes in declared order.
        profile.ops[plan.order[prefix - 1]].bytes_out
    };
    let need = kept * profile.dataset_len as f64;
    let images = matches!(logical.decoder, Decoder::Image(_));
    let use_it = images
        && goal.epochs > 1
        && goal.memory_budget_bytes > 0
        && need <= goal.memory_budget_bytes as f64
        && c1.step_ms < c0.step_ms;
    plan.cache_bytes = if use_it { goal.memory_budget_bytes } else { 0 };
    let why = if !images {
        "the prefix cache holds decoded images; speech and text pipelines are not cached"
            .to_string()
    } else if goal.epochs <= 1 {
        "one epoch: nothing to reuse".to_string()
    } else if goal.memory_budget_bytes == 0 {
        "no memory budget given".to_string()
    } else if need > goal.memory_budget_bytes as f64 {
        format!(
            "needs {:.0} MiB, over the {} MiB budget",
            need / 1048576.0,
            goal.memory_budget_bytes >> 20
        )
    } else if !use_it {
        "serving from memory would not be faster".to_string()
    } else {
        format!(
            "{:.0} MiB of {} MiB budget, from epoch 2 on",
            need / 1048576.0,
            goal.memory_budget_bytes >> 20
        )
    };
    let mut d = Decision::new(
        "cache",
        format!(
            "{} the output of {} ({why})",
            if use_it { "keep" } else { "do not keep" },
            names.join("+")
        ),
    );
    d.alternatives = vec![
        ("no cache".into(), c0, !use_it),
        ("cache".into(), c1, use_it),
    ];
    d
}
