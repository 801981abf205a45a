// Runs one notebook as a reader's kernel does — its #r lines and all, in a process that has none of MlNetGuide's or
// TorchSharp's assemblies — and writes a copy of it with this run's outputs.
//   MlNetGuide.NotebookHost <notebook.ipynb> <copy.ipynb>
using MlNetGuide.Notebooks.Tests;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: MlNetGuide.NotebookHost <notebook.ipynb> <copy.ipynb>");
    return 2;
}
try
{
    var run = await NotebookRunner.RunAsync(args[0], asReader: true);
    File.Copy(args[0], args[1], overwrite: true);
    NotebookRunner.SaveOutputs(args[1], run);
    return 0;
}
catch (NotebookCellException e)
{
    Console.Error.WriteLine(e.Message);
    return 1;
}
