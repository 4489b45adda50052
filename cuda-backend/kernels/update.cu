// update.cu: Backend::update, one optimizer step of one parameter, fused into
// a single kernel: each thread reads an element's parameter, gradient and
// state, applies the rule and writes parameter and state back, so optimizer
// state never leaves the device and each float is touched once.
// The rules are ember-nn-core's `Update::step` (core/src/ops/optim.rs), with
// PyTorch's conventions.

// Rule codes and flags: `UpdateParams::from_rule` in src/kernels.rs fills these.
#define RULE_SGD 0
#define RULE_ADAM 1
#define RULE_RMSPROP 2
#define RULE_ADAGRAD 3

#define FLAG_NESTEROV 1   // SGD
#define FLAG_FIRST 2      // SGD: the first step (the momentum buffer starts as the gradient)
#define FLAG_DECOUPLED 4  // Adam: AdamW's decoupled weight decay
#define FLAG_CENTERED 8   // RMSprop
#define FLAG_AMSGRAD 16   // Adam: divide by the largest second moment so far

// One step's hyper-parameters, passed by value. The layout must match the
// #[repr(C)] `UpdateParams` in src/kernels.rs: two ints, then floats.
struct UpdateParams {
    int rule;
    int flags;
    float lr;
    float weight_decay;
    float eps;
    float momentum;    // SGD, RMSprop
    float dampening;   // SGD
    float beta1;       // Adam
    float beta2;       // Adam
    float alpha;       // RMSprop's smoothing constant
    float bias1;       // Adam: 1 - beta1^t
    float bias2_sqrt;  // Adam: sqrt(1 - beta2^t)
};

// State planes: plane k of element i is at state + k*n + i.
// SGD: 0 = momentum buffer (only when momentum != 0). Adam: 0 = first moment,
// 1 = second moment, 2 = the largest second moment (AMSGrad). RMSprop: 0 = square average, 1 = momentum buffer,
// 2 = gradient average (centred). Adagrad: 0 = sum of squared gradients.
extern "C" __global__ void ember_update(float* buf, u64 param, u64 grad, u64 state, u64 n,
                                        UpdateParams u) {
    FOR_EACH(i, n) {
        float p = buf[param + i];
        float g = buf[grad + i];
        float* s0 = buf + state + i;
        float* s1 = s0 + n;
        float* s2 = s1 + n;
        switch (u.rule) {
        case RULE_SGD: {
            float d = g + u.weight_decay * p;
            if (u.momentum != 0.0f) {
                float m = (u.flags & FLAG_FIRST) ? d : u.momentum * *s0 + (1.0f - u.dampening) * d;
                *s0 = m;
                d = (u.flags & FLAG_NESTEROV) ? d + u.momentum * m : m;
            }
            p = p - u.lr * d;
            break;
        }
        case RULE_ADAM: {
            if (u.flags & FLAG_DECOUPLED) {
                p *= 1.0f - u.lr * u.weight_decay;
            } else {
                g += u.weight_decay * p;
            }
            float m = u.beta1 * *s0 + (1.0f - u.beta1) * g;
            float v = u.beta2 * *s1 + (1.0f - u.beta2) * g * g;
            *s0 = m;
            *s1 = v;
            if (u.flags & FLAG_AMSGRAD) {
                // torch.maximum: NaN propagates.
                float vmax = (v > *s2 || is_nan(v)) ? v : *s2;
                *s2 = vmax;
                v = vmax;
            }
            float denom = sqrtf(v) / u.bias2_sqrt + u.eps;
            p = p - (u.lr / u.bias1) * m / denom;
            break;
        }
        case RULE_RMSPROP: {
            g = g + u.weight_decay * p;
            float sq = u.alpha * *s0 + (1.0f - u.alpha) * g * g;
            *s0 = sq;
            float avg;
            if (u.flags & FLAG_CENTERED) {
                float ga = u.alpha * *s2 + (1.0f - u.alpha) * g;
                *s2 = ga;
                avg = sqrtf(sq - ga * ga) + u.eps;
            } else {
                avg = sqrtf(sq) + u.eps;
            }
            if (u.momentum > 0.0f) {
                float b = u.momentum * *s1 + g / avg;
                *s1 = b;
                p = p - u.lr * b;
            } else {
                p = p - u.lr * g / avg;
            }
            break;
        }
        case RULE_ADAGRAD: {
            g = g + u.weight_decay * p;
            float sum = *s0 + g * g;
            *s0 = sum;
            p = p - u.lr * g / (sqrtf(sum) + u.eps);
            break;
        }
        default: p = __int_as_float(0x7fc00000); break;
        }
        buf[param + i] = p;
    }
}
