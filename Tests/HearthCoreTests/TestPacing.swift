/// Gives the cooperative pool back now and then in a long loop of synchronous work. swift-testing runs every test of
/// the process on the same few threads (as many as cores); a test that computes for half a minute without a
/// suspension point holds one of them, and async tests elsewhere wait behind it: with two such tests at once on two
/// cores, a pool member's start (in `PoolWorkTests`) missed its 20 s deadline without having run at all.
func pace(_ iteration: Int, every interval: Int = 128) async {
    if iteration % interval == interval - 1 { await Task.yield() }
}
