namespace MlNetGuide.Modules;

/// <summary>The recurrent layer a <see cref="BiRnnEncoder"/> runs in both directions.</summary>
public enum RecurrentCell
{
    /// <summary>Long short-term memory (d2l 10.1; PyTorch's <c>nn.LSTM</c>, gates i, f, g, o).</summary>
    Lstm,

    /// <summary>Gated recurrent unit (d2l 10.2; PyTorch's <c>nn.GRU</c>, gates r, z, n).</summary>
    Gru,
}
