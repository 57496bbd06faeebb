//! The profile-driven optimizer: LogicalPlan → rules (reorder, fuse, place, parallelism, cache)
//! → PhysicalPlan, priced by the cost model against a cost profile, with `explain` showing every
//! decision and the alternatives it weighed.

mod plan;
pub mod profile;
mod profile_audio;
mod profile_text;
mod rules;

pub use plan::{decode_ns, predict, Cost, Goal, LogicalPlan, PhysicalPlan};
pub use profile::{CostProfile, GpuCost, OpCost};
pub use rules::{cache, fuse, parallelism, place, reorder, Decision};

use crate::error::{Error, Result};

/// The optimizer's result.
#[derive(Debug, Clone)]
pub struct Optimized {
    pub logical: LogicalPlan,
    pub physical: PhysicalPlan,
    pub decisions: Vec<Decision>,
    /// The declared plan's cost, for comparison.
    pub baseline: Cost,
    pub predicted: Cost,
    pub profile_source: String,
}

/// Run every rule in order on the declared plan.
pub fn optimize(logical: &LogicalPlan, profile: &CostProfile, goal: &Goal) -> Result<Optimized> {
    if profile.ops.len() != logical.ops.len() {
        return Err(Error::InvalidPipeline(format!(
            "the cost profile describes {} operators, the pipeline has {}",
            profile.ops.len(),
            logical.ops.len()
        )));
    }
    let declared = PhysicalPlan::declared(logical, profile.cpu_threads);
    let baseline = predict(&declared, logical, profile, goal);
    let mut physical = declared;
    let decisions = vec![
        reorder(&mut physical, logical, profile, goal),
        fuse(&mut physical, logical, profile, goal),
        place(&mut physical, logical, profile, goal),
        parallelism(&mut physical, logical, profile, goal),
        cache(&mut physical, logical, profile, goal),
    ];
    let predicted = predict(&physical, logical, profile, goal);
    Ok(Optimized {
        logical: logical.clone(),
        physical,
        decisions,
        baseline,
        predicted,
        profile_source: format!("{} / {}", profile.machine, profile.dataset),
    })
}

fn cost_line(c: &Cost) -> String {
    format!(
        "{:>7.0} samples/s  step {:>8.2} ms = max(cpu {:>8.2}, h2d {:>7.2}, train+gpu {:>8.2})",
        c.images_per_second,
        c.step_ms,
        c.cpu_ms,
        c.h2d_ms,
        c.train_ms + c.gpu_ms
    )
}

impl Optimized {
    /// The logical plan, each rule's decision with the alternatives' predicted costs (per batch),
    /// the physical plan, and the predicted throughput and stall.
    pub fn explain(&self, goal: &Goal) -> String {
        let l = &self.logical;
        let mut s = format!(
            "profile: {}\ngoal: batch {}, training step {} ms, {} epochs, cache budget {} MiB{}\n\nlogical plan (declared):\n",
            self.profile_source,
            goal.batch_size,
            goal.train_step_ms,
            goal.epochs,
            goal.memory_budget_bytes >> 20,
            if goal.allow_approx { ", approximate reorders allowed" } else { "" }
        );
        s += &format!("  0 {}\n", l.decoder.name());
        for (i, op) in l.ops.iter().enumerate() {
            let spec = op.spec();
            let mut tags = vec![if spec.random {
                "random"
            } else {
                "deterministic"
            }];
            if let Some(p) = l.pins[i] {
                tags.push(match p {
                    crate::Placement::Cpu => "pinned cpu",
                    crate::Placement::Wgpu => "pinned wgpu",
                    crate::Placement::Cuda => "pinned cuda",
                    crate::Placement::Auto => "auto",
                });
            }
            if l.fixed[i] {
                tags.push("fixed");
            }
            s += &format!("  {} {} [{}]\n", i + 1, op.name(), tags.join(", "));
        }
        for d in &self.decisions {
            s += &format!("\nrule {}: {}\n", d.rule, d.summary);
            for (what, cost, chosen) in &d.alternatives {
                s += &format!(
                    "  {} {}  {}\n",
                    if *chosen { "*" } else { " " },
                    cost_line(cost),
                    what
                );
            }
        }
        let p = &self.physical;
        s += &format!("\nphysical plan:\n  [cpu] {}", l.decoder.name());
        if p.cache_bytes > 0 {
            s += " (cached)";
        }
        s += "\n";
        let names: Vec<&str> = p.ops(l).map(|o| o.name()).collect();
        let mut k = 0;
        while k < names.len() {
            let on = if k < p.cut { "cpu" } else { "gpu" };
            if k >= p.cut {
                s += &format!(
                    "  [gpu] {} (one batched command stream)\n",
                    names[k..].join("+")
                );
                break;
            }
            // The CPU's fused tail.
            let tail_start = if p.fuse {
                crate::exec::fused_tail_start(&p.ops(l).take(p.cut).cloned().collect::<Vec<_>>(), 0)
            } else {
                p.cut
            };
            if k == tail_start && p.cut - k > 1 {
                s += &format!("  [{on}] {} (fused)\n", names[k..p.cut].join("+"));
                k = p.cut;
                continue;
            }
            s += &format!("  [{on}] {}\n", names[k]);
            k += 1;
        }
        s += &format!(
            "  threads {}, prefetch {} (adaptive up to {}), cache {} MiB\n\npredicted      {}\ndeclared plan  {}\n",
            p.threads,
            p.prefetch,
            p.max_prefetch,
            p.cache_bytes >> 20,
            cost_line(&self.predicted),
            cost_line(&self.baseline),
        );
        if goal.train_step_ms > 0.0 {
            s += &format!(
                "data stall     {:.0}% of each step waiting for data\n",
                self.predicted.stall * 100.0
            );
        }
        s
    }
}
