//! Every ```rust example in the client's README, compiled (build.rs turns
//! each into a function) and run against a real server and a real cluster.

use testkit::cluster::Cluster;
use testkit::Server;

include!(concat!(env!("OUT_DIR"), "/readme_examples.rs"));

// A README that lost its examples fails the build, not silently passes.
const _: () = assert!(README_EXAMPLES >= 4, "README lost its examples");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_examples_compile_and_run() {
    let server = Server::start(&[]);
    let cluster = Cluster::start();
    let urls = cluster.urls();
    let cluster_urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    for i in 0..README_EXAMPLES {
        if let Err(e) = run_readme_example(i, &server.url(), &cluster_urls).await {
            panic!("README example {} failed: {e}", i + 1);
        }
    }
}
