namespace MlNetGuide.Modules;

/// <summary>
/// A module that takes token ids and returns logits: an int64 tensor [batch, time] in, where id 0 is padding and ids
/// 1 to <see cref="VocabularySize"/> − 1 are tokens, and float logits [batch, <see cref="Outputs"/>] out. Appending
/// padding to a row must not change its logits. <see cref="FastTextClassifier"/>, <see cref="TextCnn"/>,
/// <see cref="BiRnnEncoder"/> and <see cref="TransformerTextEncoder"/> are such modules; implement it on your own to
/// say the same (and export it with <c>OnnxExporter.ExportTokenSequences</c>).
/// </summary>
public interface ITokenSequenceModule
{
    /// <summary>Ids 0 to <c>VocabularySize − 1</c> are accepted; 0 is padding, so this is the number of tokens + 1.</summary>
    long VocabularySize { get; }

    /// <summary>Logits per row.</summary>
    long Outputs { get; }
}
