//! Plans as data, and the cost model (DESIGN.md, "Placement and the cost model") that prices a
//! physical plan against a cost profile.

use super::profile::CostProfile;
use crate::ops::{Decoder, Op, OpKind, SizeRule};
use crate::placement::Placement;

/// What the user declared: operators in order, pins, and operators that must not move.
#[derive(Debug, Clone)]
pub struct LogicalPlan {
    /// What makes each sample's first value (decoded images or audio).
    pub decoder: Decoder,
    pub ops: Vec<Op>,
    pub pins: Vec<Option<Placement>>,
    /// Operators the reorder rule never moves.
    pub fixed: Vec<bool>,
    /// Batches are delivered in CUDA device memory: on a CUDA device the output is not read
    /// back, so what the GPU makes never crosses the link again.
    pub device_batches: bool,
}

impl LogicalPlan {
    pub fn new(ops: Vec<Op>) -> Self {
        let n = ops.len();
        LogicalPlan {
            decoder: Decoder::default(),
            ops,
            pins: vec![None; n],
            fixed: vec![false; n],
            device_batches: false,
        }
    }
}

/// What the plan is for.
#[derive(Debug, Clone)]
pub struct Goal {
    pub batch_size: usize,
    /// The training step the pipeline overlaps with (0: consume as fast as possible).
    pub train_step_ms: f64,
    pub epochs: u32,
    /// Memory the prefix cache may use (0: no cache).
    pub memory_budget_bytes: usize,
    /// Allow reorders that change values up to rounding (approximate commutation).
    pub allow_approx: bool,
}

/// How the plan runs: operators in `order` (declared indices), the GPU suffix from position
/// `cut`, CPU fusion, thread count, prefetch depth, and the prefix cache budget.
#[derive(Debug, Clone, PartialEq)]
pub struct PhysicalPlan {
    pub order: Vec<usize>,
    pub cut: usize,
    pub fuse: bool,
    pub threads: usize,
    pub prefetch: usize,
    /// Ceiling for the adaptive prefetch controller (0: fixed depth).
    pub max_prefetch: usize,
    pub cache_bytes: usize,
}

impl PhysicalPlan {
    /// The declared plan, unoptimized: declared order, all on CPU, nothing fused or cached.
    pub fn declared(logical: &LogicalPlan, threads: usize) -> Self {
        PhysicalPlan {
            order: (0..logical.ops.len()).collect(),
            cut: logical.ops.len(),
            fuse: false,
            threads,
            prefetch: 2,
            max_prefetch: 0,
            cache_bytes: 0,
        }
    }

    pub fn ops<'a>(&'a self, logical: &'a LogicalPlan) -> impl Iterator<Item = &'a Op> + 'a {
        self.order.iter().map(move |&i| &logical.ops[i])
    }
}

/// Predicted time per batch, in ms, and what it adds up to.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Cost {
    pub cpu_ms: f64,
    pub h2d_ms: f64,
    pub gpu_ms: f64,
    /// The training step the GPU work shares the device with.
    pub train_ms: f64,
    /// max(cpu, h2d, train step + gpu): the pipeline overlaps with training.
    pub step_ms: f64,
    pub images_per_second: f64,
    /// Predicted fraction of the step the consumer waits for data.
    pub stall: f64,
}

/// Per-sample bytes into each operator at its executed position, and its CPU ns there: costs
/// scale with the bytes an operator sees (a crop moved earlier shrinks what follows it).
fn flow(plan: &PhysicalPlan, logical: &LogicalPlan, profile: &CostProfile) -> Vec<(f64, f64, f64)> {
    let mut bytes = profile.decoded_bytes;
    plan.order
        .iter()
        .map(|&i| {
            let (op, cost) = (&logical.ops[i], &profile.ops[i]);
            let scale = if cost.bytes_in > 0.0 {
                bytes / cost.bytes_in
            } else {
                1.0
            };
            let out = match op.spec().size {
                SizeRule::Fixed { .. } if !op.produces_tensor() => cost.bytes_out,
                _ => cost.bytes_out * scale,
            };
            let entry = (bytes, out, cost.cpu_ns * scale);
            bytes = out;
            entry
        })
        .collect()
}

/// CPU ns per sample saved by fusion: a flip directly before the tensor operator is folded into
/// its write (no pass of its own).
pub fn fusion_saving_ns(plan: &PhysicalPlan, logical: &LogicalPlan, cpu_ns: &[f64]) -> f64 {
    let cpu_len = plan.cut.min(plan.order.len());
    if !plan.fuse || cpu_len < 2 {
        return 0.0;
    }
    let last = &logical.ops[plan.order[cpu_len - 1]];
    let before = &logical.ops[plan.order[cpu_len - 2]];
    if last.produces_tensor() && before.spec().kind == OpKind::RandomHorizontalFlip {
        cpu_ns[cpu_len - 2]
    } else {
        0.0
    }
}

/// Decode per sample under `plan`: the crop-aware window decode (DCT-scaled when approximations
/// are allowed) where the executor pushes the leading crop into decode, else the whole decode.
/// The profile times the window decodes for the declared leading crop, so a plan that moves
/// another operator first prices a whole decode.
pub fn decode_ns(
    plan: &PhysicalPlan,
    logical: &LogicalPlan,
    profile: &CostProfile,
    goal: &Goal,
) -> f64 {
    let cpu: Vec<Op> = plan.ops(logical).take(plan.cut).cloned().collect();
    let pushed = plan.order.first() == Some(&0)
        && matches!(logical.decoder, crate::ops::Decoder::Image(_))
        && crate::exec::crop_into_decode(&cpu, cpu.len(), plan.fuse, plan.cache_bytes > 0)
            .is_some();
    let measured = match (pushed, goal.allow_approx) {
        (false, _) => None,
        (true, true) => profile.scaled_decode_ns.or(profile.window_decode_ns),
        (true, false) => profile.window_decode_ns,
    };
    measured.unwrap_or(profile.decode_ns)
}

/// Number of leading executed operators (on the CPU) that draw no random numbers.
pub fn cached_prefix(plan: &PhysicalPlan, logical: &LogicalPlan) -> usize {
    plan.ops(logical)
        .take(plan.cut)
        .take_while(|op| !op.spec().random && !op.produces_tensor())
        .count()
}

/// Price `plan`: DESIGN.md's model, per batch.
pub fn predict(
    plan: &PhysicalPlan,
    logical: &LogicalPlan,
    profile: &CostProfile,
    goal: &Goal,
) -> Cost {
    let n = plan.order.len();
    let cut = plan.cut.min(n);
    let flows = flow(plan, logical, profile);
    let cpu_ns: Vec<f64> = flows.iter().map(|f| f.2).collect();
    let batch = goal.batch_size as f64;

    // CPU: read + decode + the CPU operators, minus fusion; a cache serves its prefix from
    // memory after the first epoch.
    let mut front = profile.read_ns + decode_ns(plan, logical, profile, goal);
    let prefix = cached_prefix(plan, logical);
    if plan.cache_bytes > 0 && goal.epochs > 1 {
        let kept_bytes = if prefix == 0 {
            profile.decoded_bytes
        } else {
            flows[prefix - 1].1
        };
        let fits = kept_bytes * profile.dataset_len as f64 <= plan.cache_bytes as f64;
        if fits {
            let produce = front + cpu_ns[..prefix].iter().sum::<f64>();
            let serve = kept_bytes / profile.memcpy_gbps;
            let e = f64::from(goal.epochs);
            front = (produce + (e - 1.0) * serve) / e - cpu_ns[..prefix].iter().sum::<f64>();
        }
    }
    let cpu_sample =
        front + cpu_ns[..cut].iter().sum::<f64>() - fusion_saving_ns(plan, logical, &cpu_ns);

    // GPU: the suffix's kernels; they share the device with the training step.
    let gpu_sample: f64 = plan.order[cut..]
        .iter()
        .zip(&flows[cut..])
        .map(|(&i, f)| {
            let c = &profile.ops[i];
            c.gpu_ns.unwrap_or(f64::INFINITY)
                * if c.bytes_in > 0.0 {
                    f.0 / c.bytes_in
                } else {
                    1.0
                }
        })
        .sum();

    // Bytes crossing to the device: at the cut, or the finished batch when all is on the CPU.
    let out_bytes = flows.last().map_or(profile.decoded_bytes, |f| f.1);
    let crossing = match &profile.gpu {
        None => 0.0,
        Some(g) if cut < n => {
            let at_cut = if cut == 0 {
                profile.decoded_bytes
            } else {
                flows[cut - 1].1
            };
            // Results read back (wgpu, CUDA host batches) cross again to the training device;
            // CUDA device batches stay where the kernels wrote them.
            let kept = logical.device_batches && g.backend == "cuda";
            at_cut
                + if g.reads_back && !kept {
                    2.0 * out_bytes
                } else {
                    0.0
                }
        }
        Some(_) => out_bytes,
    };
    let h2d_ms = profile
        .gpu
        .as_ref()
        .map_or(0.0, |g| crossing * batch / (g.h2d_gbps * 1e9) * 1e3);

    let mut cpu_ms = cpu_sample * batch / plan.threads.max(1) as f64 / 1e6;
    let gpu_ms = if cut < n {
        gpu_sample * batch / 1e6
    } else {
        0.0
    };
    if profile.gpu.as_ref().is_some_and(|g| g.software) {
        // A software rasterizer runs on the same cores.
        cpu_ms += gpu_ms / plan.threads.max(1) as f64;
    }
    let step_ms = cpu_ms.max(h2d_ms).max(goal.train_step_ms + gpu_ms);
    let images_per_second = if step_ms > 0.0 {
        batch / step_ms * 1e3
    } else {
        f64::INFINITY
    };
    let stall = if step_ms > 0.0 {
        (step_ms - goal.train_step_ms - gpu_ms).max(0.0) / step_ms
    } else {
        0.0
    };
    Cost {
        cpu_ms,
        h2d_ms,
        gpu_ms,
        train_ms: goal.train_step_ms,
        step_ms,
        images_per_second,
        stall,
    }
}
