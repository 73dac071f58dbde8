// Not a macro error: the implementation's future must be `Send`, and holding an
// `Rc` across an `.await` breaks that. The error points at the `impl`.
use std::rc::Rc;

#[mw::service]
pub trait Svc {
    async fn get(&self) -> u64;
}

struct Impl;

impl Svc for Impl {
    async fn get(&self) -> u64 {
        let rc = Rc::new(1);
        std::future::ready(()).await;
        *rc
    }
}

fn main() {}
