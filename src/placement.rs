//! Where each operator runs. A pipeline has at most one CPU→GPU cut: operators before it run on
//! CPU worker threads per sample, the suffix from it on runs as batched GPU kernels. The user
//! pins operators (a GPU pin takes the suffix from that operator with it) and picks a default;
//! `Auto` applies a simple rule until the optimizer's cost model replaces it.

use crate::ops::{Op, SizeRule};

/// Where to run an operator (or, as the pipeline default, every operator not pinned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    #[default]
    Cpu,
    /// WGSL kernels through wgpu.
    Wgpu,
    /// CUDA kernels through cudarc (NVIDIA GPUs).
    Cuda,
    /// The rule in [`auto_cut`]: after the first operator that fixes the image size.
    Auto,
}

impl Placement {
    pub fn from_name(name: &str) -> Option<Placement> {
        match name {
            "cpu" => Some(Placement::Cpu),
            "wgpu" => Some(Placement::Wgpu),
            "cuda" => Some(Placement::Cuda),
            "auto" => Some(Placement::Auto),
            _ => None,
        }
    }
}

/// What the GPU side can offer, as far as placement cares.
#[derive(Debug, Clone)]
pub enum GpuAvailability {
    /// Not probed: nothing asked for a GPU.
    NotProbed,
    Unavailable(String),
    /// An adapter, described; `software` for a CPU rasterizer such as lavapipe.
    Available {
        name: String,
        software: bool,
    },
}

/// The resolved placement: `ops[cut..]` run on the GPU (none when `cut == ops.len()`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    pub cut: usize,
    /// Why the cut is where it is (shown by describe and `sluice bench`).
    pub reason: String,
}

/// Auto's rule: ship u8 images across the cut once they are as small as they get, i.e. cut
/// after the first operator that gives every sample a fixed size (a crop); the pixel-wise ops and
/// the normalize after it go to the GPU. Without such an operator, everything goes.
pub fn auto_cut(ops: &[Op]) -> usize {
    ops.iter()
        .position(|op| matches!(op.spec().size, SizeRule::Fixed { .. }))
        .map_or(0, |i| i + 1)
}

/// The range the cut may take given the pins and the kernels: after every CPU pin and every
/// operator without a GPU kernel (a user-defined or speech operator), at or before every GPU pin.
pub fn pinned_range(ops: &[Op], pins: &[Option<Placement>]) -> Result<(usize, usize), String> {
    let last_cpu = pins.iter().rposition(|p| *p == Some(Placement::Cpu));
    let last_cpu_only = ops.iter().rposition(|op| !op.spec().runs_on_gpu());
    let first_gpu = pins.iter().position(|p| p.is_some_and(is_gpu));
    let lower = last_cpu.max(last_cpu_only).map_or(0, |i| i + 1);
    let upper = first_gpu.unwrap_or(ops.len());
    if let (Some(c), Some(g)) = (last_cpu_only, first_gpu) {
        if c >= g {
            return Err(format!(
                "{} (operator {}) is pinned to the GPU, but {} (operator {}) has no GPU kernel{}; \
                 a pipeline has one CPU→GPU cut, so everything from a GPU pin on runs on the GPU",
                ops[g].name(),
                g + 1,
                ops[c].name(),
                c + 1,
                if c > g { " and follows it" } else { "" }
            ));
        }
    }
    if let (Some(c), Some(g)) = (last_cpu, first_gpu) {
        if c > g {
            return Err(format!(
                "{} (operator {}) is pinned to the CPU but follows {} (operator {}), pinned to \
                 wgpu; a pipeline has one CPU→GPU cut, so everything after a GPU pin runs on \
                 the GPU",
                ops[c].name(),
                c + 1,
                ops[g].name(),
                g + 1
            ));
        }
    }
    Ok((lower, upper))
}

/// Whether `pins`/`default` ask for a GPU at all (so the adapter is probed only when needed).
pub fn wants_gpu(pins: &[Option<Placement>], default: Placement) -> bool {
    default != Placement::Cpu || pins.iter().any(|p| p.is_some_and(is_gpu))
}

fn is_gpu(p: Placement) -> bool {
    matches!(p, Placement::Wgpu | Placement::Cuda)
}

/// The GPU backend the pins and default ask for: `Auto` when only the default is Auto (CUDA if
/// a device opens, else wgpu), None when nothing asks for a GPU. One backend per pipeline.
pub fn gpu_backend(
    pins: &[Option<Placement>],
    default: Placement,
) -> Result<Option<Placement>, String> {
    let mut asked: Vec<Placement> = pins
        .iter()
        .flatten()
        .copied()
        .filter(|p| is_gpu(*p))
        .collect();
    if is_gpu(default) {
        asked.push(default);
    }
    asked.dedup();
    match asked.as_slice() {
        [] if default == Placement::Auto => Ok(Some(Placement::Auto)),
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(
            "operators are pinned to both wgpu and CUDA; a pipeline uses one GPU backend".into(),
        ),
    }
}

/// Resolve the cut. `dense` says whether the pipeline's output has a fixed shape (the GPU path
/// writes dense batches only).
pub fn resolve(
    ops: &[Op],
    pins: &[Option<Placement>],
    default: Placement,
    gpu: &GpuAvailability,
    dense: bool,
) -> Result<Cut, String> {
    let (lower, upper) = pinned_range(ops, pins)?;
    let all_cpu = |reason: String| Cut {
        cut: ops.len(),
        reason,
    };
    let pinned_gpu = upper < ops.len();
    let wanted = match default {
        Placement::Cpu => upper,
        Placement::Wgpu | Placement::Cuda => lower,
        Placement::Auto => match gpu {
            GpuAvailability::Available { software: true, .. } if !pinned_gpu => {
                return Ok(all_cpu(
                    "auto: the only wgpu adapter is a software rasterizer, slower than the CPU \
                     path"
                        .into(),
                ))
            }
            _ => auto_cut(ops).clamp(lower, upper),
        },
    };
    if wanted >= ops.len() {
        return Ok(all_cpu(match default {
            Placement::Cpu => "cpu: every operator on CPU threads".into(),
            _ => "nothing left to place on the GPU after the CPU pins".into(),
        }));
    }
    let name = match gpu {
        GpuAvailability::Available { name, .. } => name,
        GpuAvailability::Unavailable(why) => {
            return Ok(all_cpu(format!(
                "GPU unavailable ({why}): every operator on CPU"
            )))
        }
        GpuAvailability::NotProbed => {
            return Ok(all_cpu("no GPU probed: every operator on CPU".into()))
        }
    };
    if !dense {
        return Ok(all_cpu(
            "the output has no fixed size (no crop to a fixed size): the GPU path writes dense \
             batches only, every operator on CPU"
                .into(),
        ));
    }
    let has_crop = ops
        .iter()
        .any(|op| matches!(op.spec().size, SizeRule::Fixed { .. }));
    let how = match default {
        Placement::Auto if has_crop => "auto: cut after the first fixed-size crop",
        Placement::Auto => "auto: every operator after the last one without a GPU kernel",
        Placement::Wgpu | Placement::Cuda => "every operator not pinned to the CPU",
        Placement::Cpu => "pinned",
    };
    Ok(Cut {
        cut: wanted,
        reason: format!("{how}; from {} on, on {name}", ops[wanted].name()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{
        ColorJitter, Normalize, RandomGrayscale, RandomHorizontalFlip, RandomResizedCrop, Resize,
    };

    fn simclr_like() -> Vec<Op> {
        vec![
            RandomResizedCrop::new(224).into(),
            RandomHorizontalFlip::new(0.5).into(),
            ColorJitter::new(0.4, 0.4, 0.4, 0.1).into(),
            RandomGrayscale::new(0.2).into(),
            Normalize::imagenet().into(),
        ]
    }

    fn gpu() -> GpuAvailability {
        GpuAvailability::Available {
            name: "test gpu".into(),
            software: false,
        }
    }

    #[test]
    fn auto_cuts_after_the_first_fixed_size_crop() {
        let ops = simclr_like();
        let none = vec![None; ops.len()];
        let cut = resolve(&ops, &none, Placement::Auto, &gpu(), true).unwrap();
        assert_eq!(cut.cut, 1, "{}", cut.reason);
        // Resize gives ragged sizes: no fixed-size crop, so everything goes.
        let ops: Vec<Op> = vec![Resize::new(64).into(), Normalize::imagenet().into()];
        assert_eq!(auto_cut(&ops), 0);
    }

    #[test]
    fn pins_bound_the_cut_and_conflicting_pins_are_an_error() {
        let ops = simclr_like();
        let mut pins = vec![None; ops.len()];
        pins[3] = Some(Placement::Wgpu);
        let cut = resolve(&ops, &pins, Placement::Cpu, &gpu(), true).unwrap();
        assert_eq!(cut.cut, 3);
        pins[2] = Some(Placement::Cpu);
        let cut = resolve(&ops, &pins, Placement::Wgpu, &gpu(), true).unwrap();
        assert_eq!(cut.cut, 3);
        pins[4] = Some(Placement::Cpu);
        let err = resolve(&ops, &pins, Placement::Auto, &gpu(), true).unwrap_err();
        assert!(
            err.contains("Normalize (operator 5) is pinned to the CPU"),
            "{err}"
        );
    }

    #[test]
    fn one_gpu_backend_per_pipeline() {
        use Placement::{Auto, Cpu, Cuda, Wgpu};
        assert_eq!(gpu_backend(&[None, None], Cpu), Ok(None));
        assert_eq!(gpu_backend(&[None, None], Auto), Ok(Some(Auto)));
        assert_eq!(gpu_backend(&[Some(Cuda), None], Cpu), Ok(Some(Cuda)));
        assert_eq!(gpu_backend(&[None, Some(Cpu)], Wgpu), Ok(Some(Wgpu)));
        assert!(gpu_backend(&[Some(Cuda), None], Wgpu).is_err());
        assert!(gpu_backend(&[Some(Cuda), Some(Wgpu)], Cpu).is_err());
    }

    #[test]
    fn without_a_usable_gpu_everything_stays_on_cpu_with_a_reason() {
        let ops = simclr_like();
        let none = vec![None; ops.len()];
        let gone = GpuAvailability::Unavailable("no adapter".into());
        let cut = resolve(&ops, &none, Placement::Wgpu, &gone, true).unwrap();
        assert_eq!(cut.cut, ops.len());
        assert!(cut.reason.contains("no adapter"), "{}", cut.reason);
        let soft = GpuAvailability::Available {
            name: "llvmpipe".into(),
            software: true,
        };
        let cut = resolve(&ops, &none, Placement::Auto, &soft, true).unwrap();
        assert_eq!(cut.cut, ops.len(), "{}", cut.reason);
        // An explicit request still runs on the software adapter (that is how CI tests it).
        let cut = resolve(&ops, &none, Placement::Wgpu, &soft, true).unwrap();
        assert_eq!(cut.cut, 0);
        let cut = resolve(&ops, &none, Placement::Wgpu, &gpu(), false).unwrap();
        assert_eq!(cut.cut, ops.len(), "ragged output stays on CPU");
    }
}
