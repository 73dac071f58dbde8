#[mw::service(name = "svc", name = "other")]
pub trait Svc {
    async fn get(&self) -> u64;
}

fn main() {}
