//! Tests of `shift_conv`: against the direct convolution (f64), bit for bit against im2col +
//! GEMM for the forward pass, and the rule that picks the path.

use ndarray::{Array1, Array4};
use proptest::prelude::*;

use super::*;
use crate::kernels::conv_config::Conv2dConfig;
use crate::kernels::conv_gemm::{conv2d_backward, im2col_forward};
use crate::kernels::direct_conv::{
    conv2d_direct, conv2d_direct_input_grad, conv2d_direct_weight_grad,
};
use crate::kernels::packed_gemm::tests::filled;

/// A convolution's shapes: batch, in and out channels, input size, kernel, padding.
#[derive(Clone, Debug)]
struct Shape {
    batch: usize,
    cin: usize,
    cout: usize,
    in_hw: [usize; 2],
    kernel: [usize; 2],
    pad: [usize; 2],
}

impl Shape {
    fn cfg(&self) -> Conv2dConfig {
        Conv2dConfig {
            padding: self.pad,
            ..Conv2dConfig::default()
        }
    }

    fn problem(&self) -> ConvProblem {
        let win = self.cfg().window(self.in_hw, self.kernel).expect("fits");
        ConvProblem::new(self.batch, self.cin, self.cout, 1, win)
    }
}

/// Shapes whose kernel fits the padded input; out channels cross the 8-row tiles, widths the
/// 16-lane vectors and 48-column panels.
fn shapes() -> impl Strategy<Value = Shape> {
    (1usize..4, 1usize..5, 1usize..20, 1usize..4, 1usize..4).prop_flat_map(
        |(batch, cin, cout, kh, kw)| {
            (0..kh, 0..kw).prop_flat_map(move |(ph, pw)| {
                let (min_h, min_w) = (
                    kh.saturating_sub(2 * ph).max(1),
                    kw.saturating_sub(2 * pw).max(1),
                );
                (min_h..min_h + 12, min_w..min_w + 40).prop_map(move |(h, w)| Shape {
                    batch,
                    cin,
                    cout,
                    in_hw: [h, w],
                    kernel: [kh, kw],
                    pad: [ph, pw],
                })
            })
        },
    )
}

fn array4(shape: [usize; 4], v: &[f32]) -> Array4<f64> {
    Array4::from_shape_vec(shape, v.iter().map(|&x| f64::from(x)).collect()).expect("shape")
}

fn assert_close(got: &[f32], want: &Array4<f64>, what: &str) {
    let want = want.as_slice().expect("standard layout");
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The forward pass is the convolution, and the same bits as im2col + GEMM.
    #[test]
    fn forward_is_the_convolution_with_im2col_bits(s in shapes(), with_bias in any::<bool>()) {
        let Some(isa) = packed_gemm::isa() else { return Ok(()) };
        let p = s.problem();
        let x = filled(p.batch * p.in_image(), 1.0);
        let w = filled(p.weight_len(), 2.0);
        let b = with_bias.then(|| filled(s.cout, 3.0));
        let conv = ShiftConv::new(isa, s.cin, s.in_hw, s.kernel, s.pad);
        let mut y = vec![f32::NAN; p.batch * p.out_image()];
        conv.run_images(&x, &w, b.as_deref(), &mut y);

        let [oh, ow] = p.win.out_hw;
        let want = conv2d_direct(
            array4([s.batch, s.cin, s.in_hw[0], s.in_hw[1]], &x).view(),
            array4([s.cout, s.cin, s.kernel[0], s.kernel[1]], &w).view(),
            b.as_ref().map(|b| Array1::from_iter(b.iter().map(|&v| f64::from(v)))).as_ref().map(|b| b.view()),
            &s.cfg(),
        );
        prop_assert_eq!(want.dim(), (s.batch, s.cout, oh, ow));
        assert_close(&y, &want, "forward");
        let im2col = im2col_forward(&p, &x, &w, b.as_deref());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&y), bits(&im2col));
    }

    /// The input gradient is the convolution of G by the flipped weight with padding `k - 1 - p`.
    #[test]
    fn the_flipped_convolution_is_the_input_gradient(s in shapes()) {
        let Some(isa) = packed_gemm::isa() else { return Ok(()) };
        let p = s.problem();
        let g = filled(p.batch * p.out_image(), 4.0);
        let w = filled(p.weight_len(), 5.0);
        let flipped = flipped_weight(&w, s.cout, s.cin, s.kernel);
        let pad = [0, 1].map(|a| s.kernel[a] - 1 - s.pad[a]);
        let conv = ShiftConv::new(isa, s.cout, p.win.out_hw, s.kernel, pad);
        let mut dx = vec![f32::NAN; p.batch * p.in_image()];
        conv.run_images(&g, &flipped, None, &mut dx);
        let [oh, ow] = p.win.out_hw;
        let want = conv2d_direct_input_grad(
            array4([s.batch, s.cout, oh, ow], &g).view(),
            array4([s.cout, s.cin, s.kernel[0], s.kernel[1]], &w).view(),
            s.in_hw,
            &s.cfg(),
        );
        assert_close(&dx, &want, "input gradient");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The weight gradient from the shifted rows is the direct one, added onto what `dw` held.
    #[test]
    fn the_shifted_weight_gradient_is_the_direct_one(s in shapes()) {
        let Some(isa) = packed_gemm::isa() else { return Ok(()) };
        let p = s.problem();
        let x = filled(p.batch * p.in_image(), 9.0);
        let g = filled(p.batch * p.out_image(), 10.0);
        let start = filled(p.weight_len(), 11.0);
        let conv = ShiftConv::new(isa, s.cin, s.in_hw, s.kernel, s.pad);
        let mut dw = start.clone();
        conv.weight_grad_images(&x, &g, &mut dw);
        let [oh, ow] = p.win.out_hw;
        let mut want = conv2d_direct_weight_grad(
            array4([s.batch, s.cin, s.in_hw[0], s.in_hw[1]], &x).view(),
            array4([s.batch, s.cout, oh, ow], &g).view(),
            s.kernel,
            &s.cfg(),
        );
        want.iter_mut().zip(&start).for_each(|(w, &s)| *w += f64::from(s));
        assert_close(&dw, &want, "weight gradient");
    }
}

/// ResNet-20's 3 x 3 convolutions (stride 1, padding 1) take the shifted path, and
/// `conv2d_backward` then gives the direct input and weight gradients; strided, grouped, dilated and
/// heavily wrapping convolutions (LeNet-5's 5 x 5 on 12 x 12, no padding) do not.
#[test]
fn the_rule_picks_stride_one_same_convolutions() {
    if packed_gemm::isa().is_none() {
        return;
    }
    let resnet = |c, hw| Shape {
        batch: 2,
        cin: c,
        cout: c,
        in_hw: [hw, hw],
        kernel: [3, 3],
        pad: [1, 1],
    };
    for s in [resnet(16, 32), resnet(32, 16), resnet(64, 8), resnet(3, 32)] {
        let p = s.problem();
        assert!(ShiftPlan::new(&p).is_some(), "{s:?}");
        let (x, w) = (
            filled(p.batch * p.in_image(), 6.0),
            filled(p.weight_len(), 7.0),
        );
        let g = filled(p.batch * p.out_image(), 8.0);
        let dx = conv2d_backward(&p, &x, &w, &g, [true, false, false])
            .input
            .expect("asked");
        let [oh, ow] = p.win.out_hw;
        let want = conv2d_direct_input_grad(
            array4([s.batch, s.cout, oh, ow], &g).view(),
            array4([s.cout, s.cin, 3, 3], &w).view(),
            s.in_hw,
            &s.cfg(),
        );
        assert_close(&dx, &want, "conv2d_backward's input gradient");
    }
    let lenet5_conv2 = Shape {
        batch: 1,
        cin: 20,
        cout: 50,
        in_hw: [12, 12],
        kernel: [5, 5],
        pad: [0, 0],
    };
    assert!(ShiftPlan::new(&lenet5_conv2.problem()).is_none());
    let base = resnet(16, 32);
    let win = |cfg: Conv2dConfig| cfg.window(base.in_hw, base.kernel).expect("fits");
    for cfg in [
        Conv2dConfig {
            stride: [2, 2],
            padding: [1, 1],
            ..Conv2dConfig::default()
        },
        Conv2dConfig {
            dilation: [2, 2],
            padding: [1, 1],
            ..Conv2dConfig::default()
        },
    ] {
        assert!(
            ShiftPlan::new(&ConvProblem::new(2, 16, 16, 1, win(cfg))).is_none(),
            "{cfg:?}"
        );
    }
    let grouped = ConvProblem::new(2, 16, 16, 2, win(base.cfg()));
    assert!(ShiftPlan::new(&grouped).is_none());
}

/// The AVX2 kernels (the table variants included) give the AVX-512 bits on the shifted path.
#[test]
fn avx2_and_avx512_agree_on_the_shifted_path() {
    if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma")) {
        return; // nothing to compare on this CPU
    }
    for (cin, cout, hw) in [(3, 16, [9, 33]), (16, 8, [8, 8]), (5, 70, [4, 20])] {
        let s = Shape {
            batch: 2,
            cin,
            cout,
            in_hw: hw,
            kernel: [3, 3],
            pad: [1, 1],
        };
        let p = s.problem();
        let x = filled(p.batch * p.in_image(), 12.0);
        let w = filled(p.weight_len(), 13.0);
        let run = |isa| {
            let conv = ShiftConv::new(isa, s.cin, s.in_hw, s.kernel, s.pad);
            let mut y = vec![0.0; p.batch * p.out_image()];
            conv.run_images(&x, &w, None, &mut y);
            let mut dw = vec![0.0; p.weight_len()];
            conv.weight_grad_images(&x, &y, &mut dw);
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            (bits(y), bits(dw))
        };
        assert!(run(Isa::Avx2) == run(Isa::Avx512), "{s:?}");
    }
}
