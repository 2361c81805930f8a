//! The reference models: parameter names and shapes against the PyTorch reference
//! implementations (`tests/fixtures/resnet20_state_dict.txt` was printed by akamaster's
//! `resnet.py`), parameter and multiply-accumulate counts, output shapes, the forward order of
//! prunable weights, the option-A shortcut, train/eval modes, a gradient check through one
//! residual block, and the `models::build` registry.

use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use ndarray::{Array4, IxDyn, s};
use sparsegrad::check::{CheckOptions, gradcheck};
use sparsegrad::models::ModelName;
use sparsegrad::models::mobilenet::round_channels;
use sparsegrad::models::resnet::Shortcut;
use sparsegrad::models::{
    BasicBlock, FastGrnnClassifier, LeNet5, LeNet5Options, MobileNet, ModelSpec, ResNet, build,
};
use sparsegrad::nn::{BatchNorm, Module, RecurrentCell, Weight, WeightTransform, named_params};
use sparsegrad::nn::{count_trainable, unroll};
use sparsegrad::rng::{seeded, standard_normal};
use sparsegrad::sparsity::report::sparsity_report;
use sparsegrad::tape::{Tape, Tensor, Var};

const MNIST: (usize, usize, usize) = (1, 28, 28);
const CIFAR: (usize, usize, usize) = (3, 32, 32);

// ---------------------------------------------------------------- helpers

fn images<F: sparsegrad::float::Float>(
    n: usize,
    (c, h, w): (usize, usize, usize),
    seed: u64,
) -> Tensor<F> {
    let mut rng = seeded(seed);
    Tensor::from_shape_simple_fn(IxDyn(&[n, c, h, w]), || F::c(standard_normal(&mut rng)))
}

/// Logits of `model` on `x` (one tape, no gradient).
fn logits<F: sparsegrad::float::Float, M: Module<F> + ?Sized>(
    model: &mut M,
    x: &Tensor<F>,
) -> Tensor<F> {
    let tape = Tape::new();
    let _no_grad = tape.no_grad();
    (*model.forward(tape.constant(x.clone())).value()).clone()
}

/// (name, shape) of every parameter and buffer, in visiting order.
fn state_dict<M: Module<f32> + ?Sized>(model: &M) -> Vec<(String, Vec<usize>)> {
    named_params(model)
        .into_iter()
        .map(|(n, p)| (n, p.shape().to_vec()))
        .collect()
}

/// Names of the prunable weights in visiting order.
fn weight_names<M: Module<f32> + ?Sized>(model: &M) -> Vec<String> {
    let mut names = Vec::new();
    model.visit_weights("", &mut |name, _| names.push(name.to_string()));
    names
}

/// Parses lines `name [d0, d1, ...]` (PyTorch's `list(tensor.shape)`), skipping `#` comments.
fn parse_state_dict(text: &str) -> Vec<(String, Vec<usize>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (name, shape) = line.split_once(' ').expect("`name shape`");
            let dims = shape.trim_matches(|c| c == '[' || c == ']');
            let shape = dims
                .split(',')
                .filter(|d| !d.trim().is_empty())
                .map(|d| d.trim().parse().expect("a dimension"))
                .collect();
            (name.to_string(), shape)
        })
        .collect()
}

/// Asserts two state_dict listings are equal, naming the first difference.
fn assert_same_state_dict(got: &[(String, Vec<usize>)], want: &[(String, Vec<usize>)]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "entry {i} differs");
    }
    assert_eq!(got.len(), want.len(), "number of entries");
}

fn resnet(depth: usize, input: (usize, usize, usize)) -> ResNet<f32> {
    ResNet::cifar(depth, input.0, 10, &mut seeded(0)).unwrap()
}

fn mobilenet(width: f64) -> MobileNet<f32> {
    MobileNet::new(3, 10, width, &mut seeded(0)).unwrap()
}

fn lenet5(relu_after_conv: bool) -> LeNet5<f32> {
    LeNet5::new(MNIST, 10, LeNet5Options { relu_after_conv }, &mut seeded(0)).unwrap()
}

fn fastgrnn(width: f64) -> FastGrnnClassifier<f32> {
    FastGrnnClassifier::new(MNIST, 10, width, &mut seeded(0)).unwrap()
}

/// Every batchnorm of a ResNet, through its public fields.
fn resnet_norms(model: &ResNet<f32>) -> Vec<&BatchNorm<f32>> {
    let mut all = vec![&model.bn1];
    for block in model.stages.iter().flatten() {
        all.extend([&block.body.bn1, &block.body.bn2]);
    }
    all
}

fn mobilenet_norms(model: &MobileNet<f32>) -> Vec<&BatchNorm<f32>> {
    let mut all = vec![&model.bn1];
    for block in &model.layers {
        all.extend([&block.body.bn1, &block.body.bn2]);
    }
    all
}

// ---------------------------------------------------------------- names, shapes, counts

#[test]
fn lenet5_state_dict_matches_the_reference() {
    let want = parse_state_dict(
        "conv1.weight [20, 1, 5, 5]\nconv1.bias [20]\nconv2.weight [50, 20, 5, 5]\nconv2.bias [50]\n\
         fc1.weight [500, 800]\nfc1.bias [500]\nfc2.weight [10, 500]\nfc2.bias [10]",
    );
    for relu in [false, true] {
        assert_same_state_dict(&state_dict(&lenet5(relu)), &want);
    }
    // 32x32 colour images: fc1 sees 50 x 5 x 5 features.
    let cifar = LeNet5::<f32>::new(CIFAR, 10, LeNet5Options::default(), &mut seeded(0)).unwrap();
    assert_eq!(cifar.conv1.weight.raw.shape(), [20, 3, 5, 5]);
    assert_eq!(cifar.fc1.weight.raw.shape(), [500, 1250]);
}

#[test]
fn resnet20_state_dict_matches_the_reference_file() {
    let want = parse_state_dict(include_str!("../fixtures/resnet20_state_dict.txt"));
    assert_eq!(want.len(), 116, "fixture parsed");
    assert_same_state_dict(&state_dict(&resnet(20, CIFAR)), &want);
}

#[test]
fn resnet32_56_and_mobilenet_state_dicts_have_the_reference_sizes() {
    // (model, state_dict entries, spot checks) from the reference implementations.
    let r32 = state_dict(&resnet(32, CIFAR));
    assert_eq!(r32.len(), 188);
    assert!(r32.contains(&("layer3.4.conv2.weight".into(), vec![64, 64, 3, 3])));
    let r56 = state_dict(&resnet(56, CIFAR));
    assert_eq!(r56.len(), 332);
    assert!(r56.contains(&("layer2.8.bn2.running_var".into(), vec![32])));
    assert_eq!(r56.last().unwrap(), &("linear.bias".to_string(), vec![10]));
    let mb = state_dict(&mobilenet(1.0));
    assert_eq!(mb.len(), 164);
    for entry in [
        ("conv1.weight", vec![32, 3, 3, 3]),
        ("layers.0.conv1.weight", vec![32, 1, 3, 3]),
        ("layers.0.conv2.weight", vec![64, 32, 1, 1]),
        ("layers.1.conv1.weight", vec![64, 1, 3, 3]),
        ("layers.12.conv2.weight", vec![1024, 1024, 1, 1]),
        ("layers.12.bn2.num_batches_tracked", vec![]),
        ("linear.weight", vec![10, 1024]),
    ] {
        assert!(
            mb.contains(&(entry.0.to_string(), entry.1.clone())),
            "{entry:?}"
        );
    }
}

#[test]
fn trainable_parameter_counts_match_the_references() {
    assert_eq!(count_trainable(&lenet5(false)), 431_080);
    assert_eq!(count_trainable(&resnet(20, CIFAR)), 269_722);
    assert_eq!(count_trainable(&resnet(32, CIFAR)), 464_154);
    assert_eq!(count_trainable(&resnet(56, CIFAR)), 853_018);
    assert_eq!(count_trainable(&mobilenet(1.0)), 3_217_226);
    // W1 28x28 + W2 32x28 + U1 32x32 + U2 32x32 + two biases 32 + zeta + nu, then 32 -> 10.
    assert_eq!(count_trainable(&fastgrnn(1.0)), 3_794 + 330);
}

#[test]
fn mobilenet_width_scales_every_layer_to_multiples_of_eight() {
    assert_eq!(round_channels(32, 1.0), 32);
    assert_eq!(round_channels(1024, 0.5), 512);
    assert_eq!(round_channels(32, 0.25), 8);
    assert_eq!(round_channels(64, 0.1), 8); // at least 8
    assert_eq!(round_channels(100, 1.0), 104); // nearest multiple of 8
    assert_eq!(round_channels(64, 0.15), 16); // 9.6 -> 8 would lose > 10%
    let half = mobilenet(0.5);
    assert_eq!(half.conv1.weight.raw.shape(), [16, 3, 3, 3]);
    assert_eq!(
        half.layers[12].body.conv2.weight.raw.shape(),
        [512, 512, 1, 1]
    );
    assert_eq!(half.linear.weight.raw.shape(), [10, 512]);
    // Depthwise: one group per channel, carrying the block's stride.
    assert_eq!(half.layers[1].body.conv1.cfg.groups, 32);
    assert_eq!(half.layers[1].body.conv1.cfg.stride, [2, 2]);
}

#[test]
fn fastgrnn_classifier_names_and_shapes_follow_edgeml() {
    let got = state_dict(&fastgrnn(1.0));
    let want = parse_state_dict(
        "rnn_list.0.cell.W1 [28, 28]\nrnn_list.0.cell.W2 [32, 28]\nrnn_list.0.cell.U1 [32, 32]\n\
         rnn_list.0.cell.U2 [32, 32]\nrnn_list.0.cell.bias_gate [1, 32]\n\
         rnn_list.0.cell.bias_update [1, 32]\nrnn_list.0.cell.zeta [1, 1]\n\
         rnn_list.0.cell.nu [1, 1]\nhidden2keyword.weight [10, 32]\nhidden2keyword.bias [10]",
    );
    assert_same_state_dict(&got, &want);
    // Width 2: hidden 64, W's rank is min(28, 64) = 28. CIFAR rows: 3 x 32 = 96 features.
    let wide = state_dict(&fastgrnn(2.0));
    assert_eq!(wide[0], ("rnn_list.0.cell.W1".into(), vec![28, 28]));
    assert_eq!(wide[1], ("rnn_list.0.cell.W2".into(), vec![64, 28]));
    let cifar = FastGrnnClassifier::<f32>::new(CIFAR, 10, 1.0, &mut seeded(0)).unwrap();
    assert_eq!(
        state_dict(&cifar)[0],
        ("rnn_list.0.cell.W1".into(), vec![32, 96])
    );
}

// ---------------------------------------------------------------- forward

#[test]
fn every_model_maps_mnist_and_cifar_batches_to_logits() {
    for name in <ModelName as clap::ValueEnum>::value_variants() {
        for input in [MNIST, CIFAR] {
            let spec = ModelSpec {
                name: *name,
                input,
                classes: 7,
                width: 1.0,
            };
            let mut model = build(&spec, &mut seeded(0)).unwrap();
            let out = logits(model.as_mut(), &images(2, input, 1));
            assert_eq!(out.shape(), [2, 7], "{name} on {input:?}");
            assert!(out.iter().all(|v| v.is_finite()), "{name} on {input:?}");
        }
    }
}

#[test]
fn fastgrnn_classifier_reads_image_rows_as_time_steps() {
    let mut model = FastGrnnClassifier::<f64>::new((2, 5, 3), 4, 0.25, &mut seeded(3)).unwrap();
    let x = images::<f64>(2, (2, 5, 3), 4);
    let got = logits(&mut model, &x);
    // By hand: step t is row t of every channel, channels side by side ([N, C * W]).
    let tape = Tape::new();
    let steps: Vec<Var<f64>> = (0..5)
        .map(|t| {
            let row = x.slice(s![.., .., t, ..]).to_owned();
            tape.constant(row.into_shape_with_order(IxDyn(&[2, 6])).unwrap())
        })
        .collect();
    let last = unroll(&model.cell, &steps, None).last;
    let want = model.hidden2keyword.forward(last).value();
    crate::common::assert_close(&got, &want);
    assert_eq!(model.cell.input_size(), 6);
    assert_eq!(model.cell.hidden_size(), 8);
}

#[test]
fn lenet5_variants_differ_only_by_the_relu_after_the_convolutions() {
    let x = images::<f32>(3, MNIST, 2);
    let (mut caffe, mut torch) = (lenet5(false), lenet5(true));
    assert!(logits(&mut caffe, &x) != logits(&mut torch, &x));
    // With every convolution output positive the relus do nothing: the outputs agree exactly.
    // (conv1's bias outweighs any sum of 25 inputs; conv2 then adds positive inputs with
    // non-negative weights.)
    for model in [&mut caffe, &mut torch] {
        model.conv1.bias.as_mut().unwrap().value_mut().fill(100.0);
        model.conv2.weight.raw.value_mut().mapv_inplace(f32::abs);
    }
    assert_eq!(logits(&mut caffe, &x), logits(&mut torch, &x));
}

// ---------------------------------------------------------------- FLOP accounting

/// Dense multiply-accumulates per image of each prunable weight, after one forward pass.
fn macs(model: &mut dyn Module<f32>, input: (usize, usize, usize)) -> Vec<(String, usize)> {
    logits(model, &images(2, input, 0));
    sparsity_report(model)
        .layers
        .into_iter()
        .map(|l| (l.name, l.flops_dense))
        .collect()
}

fn total(macs: &[(String, usize)]) -> usize {
    macs.iter().map(|(_, m)| m).sum()
}

#[test]
fn dense_macs_per_image_match_the_hand_counts() {
    let lenet = macs(&mut lenet5(false), MNIST);
    let want: Vec<(String, usize)> = [
        ("conv1.weight", 288_000),   // 20 x 25 taps x 24 x 24 positions
        ("conv2.weight", 1_600_000), // 50 x 20 x 25 x 8 x 8
        ("fc1.weight", 400_000),
        ("fc2.weight", 5_000),
    ]
    .map(|(n, m)| (n.to_string(), m))
    .into();
    assert_eq!(lenet, want);
    // Totals computed by forward hooks on the PyTorch references (conv: weight entries x output
    // positions; linear: weight entries).
    assert_eq!(total(&macs(&mut resnet(20, CIFAR), CIFAR)), 40_551_040);
    assert_eq!(total(&macs(&mut resnet(32, CIFAR), CIFAR)), 68_862_592);
    assert_eq!(total(&macs(&mut resnet(56, CIFAR), CIFAR)), 125_485_696);
    assert_eq!(total(&macs(&mut mobilenet(1.0), CIFAR)), 46_354_432);
    // FastGRNN: 28 steps x (W1 784 + W2 896 + U1 1024 + U2 1024) + classifier 320.
    let rnn = macs(&mut fastgrnn(1.0), MNIST);
    assert_eq!(rnn[0], ("rnn_list.0.cell.W1".into(), 28 * 784));
    assert_eq!(total(&rnn), 28 * 3_728 + 320);
}

// ---------------------------------------------------------------- forward order of weights

/// A transform that records the order in which layers ask for their effective weights.
struct Recorder {
    name: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl WeightTransform<f32> for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn apply<'t>(&self, raw: Var<'t, f32>) -> Var<'t, f32> {
        self.log.lock().unwrap().push(self.name.clone());
        raw
    }
    fn effective(&self, raw: &Tensor<f32>) -> Tensor<f32> {
        raw.clone()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[test]
fn prunable_weights_are_visited_in_forward_order() {
    for name in <ModelName as clap::ValueEnum>::value_variants() {
        let input = if matches!(
            name,
            ModelName::Lenet300 | ModelName::Lenet5 | ModelName::Fastgrnn
        ) {
            MNIST
        } else {
            CIFAR
        };
        let spec = ModelSpec {
            name: *name,
            input,
            classes: 10,
            width: 1.0,
        };
        let mut model = build(&spec, &mut seeded(0)).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        model.visit_weights_mut("", &mut |name, w: &mut Weight<f32>| {
            w.transform = Some(Box::new(Recorder {
                name: name.to_string(),
                log: log.clone(),
            }))
        });
        logits(model.as_mut(), &images(2, input, 0));
        let used = log.lock().unwrap().clone();
        let visited = weight_names(model.as_ref());
        assert!(visited.len() >= 3, "{name}: {visited:?}");
        assert_eq!(used, visited, "{name}: forward order vs visiting order");
    }
    // The ends the --first-layer-dense / --last-layer-dense flags rely on.
    let names = weight_names(&resnet(20, CIFAR));
    assert_eq!(names.len(), 20); // 19 convolutions and the linear layer
    assert_eq!(names.first().unwrap(), "conv1.weight");
    assert_eq!(names[1], "layer1.0.conv1.weight");
    assert_eq!(names.last().unwrap(), "linear.weight");
}

// ---------------------------------------------------------------- option-A shortcut

#[test]
fn option_a_shortcut_subsamples_and_zero_pads_channels() {
    // x[0, c, i, j] = 100 c + 10 i + j on a 2-channel 5x5 map.
    let x = Array4::from_shape_fn((1, 2, 5, 5), |(_, c, i, j)| (100 * c + 10 * i + j) as f64);
    let tape = Tape::new();
    let y = Shortcut::new(2, 6, 2)
        .apply(tape.constant(x.into_dyn()))
        .value();
    assert_eq!(y.shape(), [1, 6, 3, 3]);
    for c in 0..6 {
        for i in 0..3 {
            for j in 0..3 {
                let want = match c {
                    2 | 3 => (100 * (c - 2) + 10 * (2 * i) + 2 * j) as f64,
                    _ => 0.0, // two zero channels in front, two behind
                };
                assert_eq!(y[[0, c, i, j]], want, "channel {c} at ({i}, {j})");
            }
        }
    }
    assert_eq!(Shortcut::new(16, 16, 1), Shortcut::Identity);
    assert_eq!(
        Shortcut::new(16, 32, 2),
        Shortcut::SubsamplePad {
            stride: 2,
            before: 8,
            after: 8
        }
    );
    // An odd difference puts the extra channel behind.
    assert_eq!(
        Shortcut::new(3, 8, 1),
        Shortcut::SubsamplePad {
            stride: 1,
            before: 2,
            after: 3
        }
    );
}

// ---------------------------------------------------------------- training and evaluation modes

#[test]
fn set_training_reaches_every_batchnorm_and_only_batchnorm_changes() {
    let x = images::<f32>(4, (1, 12, 12), 5);
    let mut net = resnet(20, (1, 12, 12));
    let mut mb = MobileNet::<f32>::new(1, 10, 0.25, &mut seeded(0)).unwrap();
    net.set_training(false);
    mb.set_training(false);
    assert!(resnet_norms(&net).iter().all(|bn| !bn.is_training()));
    assert!(mobilenet_norms(&mb).iter().all(|bn| !bn.is_training()));
    assert_eq!(resnet_norms(&net).len(), 19);
    assert_eq!(mobilenet_norms(&mb).len(), 27);
    // Evaluation: running statistics, so each image's logits do not depend on the batch, and
    // the statistics are not updated.
    let before = state_dict_values(&net);
    let batch = logits(&mut net, &x);
    let single = logits(
        &mut net,
        &x.slice(s![0..1, .., .., ..]).to_owned().into_dyn(),
    );
    assert_eq!(batch.slice(s![0..1, ..]).into_dyn(), single.view());
    assert!(
        before == state_dict_values(&net),
        "eval forward changed a buffer"
    );
    // Training: batch statistics, so they do.
    net.set_training(true);
    mb.set_training(true);
    assert!(resnet_norms(&net).iter().all(|bn| bn.is_training()));
    assert!(mobilenet_norms(&mb).iter().all(|bn| bn.is_training()));
    let batch = logits(&mut net, &x);
    let single = logits(
        &mut net,
        &x.slice(s![0..2, .., .., ..]).to_owned().into_dyn(),
    );
    assert!(batch.slice(s![0..2, ..]).into_dyn() != single.view());
    // Models without batchnorm compute the same in both modes.
    for mut model in [
        Box::new(lenet5(false)) as Box<dyn Module<f32>>,
        Box::new(fastgrnn(1.0)),
    ] {
        let x = images::<f32>(3, MNIST, 6);
        let train = logits(model.as_mut(), &x);
        model.set_training(false);
        assert_eq!(train, logits(model.as_mut(), &x));
    }
}

fn state_dict_values(model: &dyn Module<f32>) -> Vec<Tensor<f32>> {
    named_params(model)
        .into_iter()
        .map(|(_, p)| p.value().clone())
        .collect()
}

// ---------------------------------------------------------------- gradients through a block

/// sum(block(x) * probe): a scalar whose gradient reaches every output element differently.
fn probed<'t>(block: &mut BasicBlock<f64>, x: Var<'t, f64>, probe: &Tensor<f64>) -> Var<'t, f64> {
    let y = block.forward(x);
    (y * x.tape().constant(probe.clone())).sum()
}

#[test]
fn gradients_through_a_basic_block_match_finite_differences() {
    // Identity and option-A blocks, tiny channels, in training mode (batch statistics).
    for (inputs, outputs, stride) in [(2, 2, 1), (2, 4, 2)] {
        let mut rng = seeded(7);
        let block = RefCell::new(BasicBlock::<f64>::new(inputs, outputs, stride, &mut rng));
        let x = images::<f64>(2, (inputs, 4, 4), 8);
        let out_side = 4 / stride;
        let probe = images::<f64>(2, (outputs, out_side, out_side), 9);
        // With respect to the input, through convolutions, batchnorm, relus and the shortcut.
        let report = gradcheck(
            |v| probed(&mut block.borrow_mut(), v[0], &probe),
            std::slice::from_ref(&x),
            &CheckOptions::default(),
        )
        .unwrap_or_else(|e| panic!("block {inputs}->{outputs}: {e}"));
        assert!(report.compared > 0);
        // With respect to every trainable parameter: the analytic directional derivative along a
        // random direction against a central difference of the loss.
        let mut block = block.into_inner();
        let tape = Tape::new();
        let grads = probed(&mut block, tape.constant(x.clone()), &probe).backward();
        let mut directions = Vec::new();
        let mut analytic = 0.0;
        let mut dir_rng = seeded(10);
        block.visit("", &mut |name, p| {
            if p.trainable() {
                let d = p.value().mapv(|_| standard_normal(&mut dir_rng));
                let g = grads
                    .of(p)
                    .unwrap_or_else(|| panic!("no gradient for {name}"));
                analytic += (g * &d).sum();
                directions.push(d);
            }
        });
        let eps = 1e-6;
        let mut loss_at = |sign: f64| {
            let mut k = 0;
            block.visit_mut("", &mut |_, p| {
                if p.trainable() {
                    p.set_value(p.value() + &(&directions[k] * (sign * eps)));
                    k += 1;
                }
            });
            let tape = Tape::new();
            let loss = probed(&mut block, tape.constant(x.clone()), &probe).item();
            let mut k = 0;
            block.visit_mut("", &mut |_, p| {
                if p.trainable() {
                    p.set_value(p.value() - &(&directions[k] * (sign * eps)));
                    k += 1;
                }
            });
            loss
        };
        let numeric = (loss_at(1.0) - loss_at(-1.0)) / (2.0 * eps);
        assert!(
            numeric.abs() > 1e-3,
            "a vanishing derivative ({numeric}) checks nothing"
        );
        assert!(
            (analytic - numeric).abs() <= 1e-5 + 1e-4 * numeric.abs(),
            "block {inputs}->{outputs}: parameters' directional derivative {analytic} vs {numeric}"
        );
    }
}

// ---------------------------------------------------------------- registry

#[test]
fn build_knows_every_model_name_and_rejects_others_clearly() {
    let spec = |name: &str, width: f64| ModelSpec {
        name: name.parse().unwrap(),
        input: MNIST,
        classes: 10,
        width,
    };
    for name in <ModelName as clap::ValueEnum>::value_variants() {
        let model = build(&spec(name.as_str(), 1.0), &mut seeded(0))
            .unwrap_or_else(|e| panic!("--model {name}: {e}"));
        assert!(count_trainable(model.as_ref()) > 0);
    }
    let err = |name: &str, width: f64| match build(&spec(name, width), &mut seeded(0)) {
        Ok(_) => panic!("--model {name} --width {width} built"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        "vgg16".parse::<ModelName>().unwrap_err().to_string(),
        "unknown --model `vgg16` (expected one of: lenet300, lenet5, resnet20, resnet32, resnet56, mobilenet, fastgrnn)"
    );
    assert_eq!(
        err("resnet20", 0.5),
        "--width 0.5 applies to mobilenet and fastgrnn only, not to --model resnet20"
    );
    // Widths scale the two models that take one.
    let narrow = build(&spec("mobilenet", 0.25), &mut seeded(0)).unwrap();
    // By hand: channels 8, 16, 32, 64, 128, 256 (each c x 0.25), MNIST's one input channel.
    assert_eq!(count_trainable(narrow.as_ref()), 215_642 - 2 * 8 * 9);
    let tiny = ModelSpec {
        input: (1, 8, 8),
        ..spec("lenet5", 1.0)
    };
    assert_eq!(
        build(&tiny, &mut seeded(0)).err().unwrap().to_string(),
        "--model lenet5 needs images of at least 1x16x16, got 1x8x8"
    );
}
