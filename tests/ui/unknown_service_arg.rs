#[mw::service(name = "svc", verison = 2)]
pub trait Svc {
    async fn get(&self) -> u64;
}

fn main() {}
