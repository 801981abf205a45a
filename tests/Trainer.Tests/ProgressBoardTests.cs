using static TorchSharp.torch;

namespace MlNetGuide.Training.Tests;

public sealed class ProgressBoardTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mlnetguide-board-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void EveryNRawPointsBecomeOnePlottedPointAtTheirMean()
    {
        using var board = new ProgressBoard();
        var seen = new List<(string, double, double)>();
        board.PointAdded += (l, x, y) => seen.Add((l, x, y));
        for (int i = 1; i <= 5; i++)
        {
            using var v = tensor((float)i);
            board.Draw(i, v, "train_loss", everyN: 2);
        }
        var line = board.Lines["train_loss"];
        Assert.Equal(2, line.Count); // (1,2) -> 1.5 ; (3,4) -> 3.5 ; 5 still pending
        Assert.Equal(1.5, line[0].X); Assert.Equal(1.5, line[0].Y);
        Assert.Equal(3.5, line[1].X); Assert.Equal(3.5, line[1].Y);
        Assert.Equal(2, seen.Count);
    }

    [Fact]
    public void RendersPngAndSvg()
    {
        using var board = new ProgressBoard { XLim = (0, 3) };
        board.Draw(1, 0.9, "train_loss");
        board.Draw(2, 0.5, "train_loss");
        board.Draw(2, 0.8, "val_acc");
        var png = Path.Combine(_dir, "curve.png");
        var svg = Path.Combine(_dir, "curve.svg");
        board.SavePng(png, 640, 400);
        board.SaveSvg(svg);
        var bytes = File.ReadAllBytes(png);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
        int width = (bytes[16] << 24) | (bytes[17] << 16) | (bytes[18] << 8) | bytes[19];
        int height = (bytes[20] << 24) | (bytes[21] << 16) | (bytes[22] << 8) | bytes[23];
        Assert.Equal((640, 400), (width, height));
        var text = File.ReadAllText(svg);
        Assert.Contains("<svg", text);
        Assert.Contains("train_loss", text);
        Assert.Contains("val_acc", text);
    }
}
