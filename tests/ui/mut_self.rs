#[mw::service]
pub trait Svc {
    async fn set(&mut self, value: u64);
}

fn main() {}
