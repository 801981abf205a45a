// End-to-end tests start processes, change the working directory (the README snippets use relative paths) and train
// on real data: run them one class at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
