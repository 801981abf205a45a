namespace MlNetGuide.Estimators;

/// <summary>
/// A column the estimator or transformer needs is missing or has the wrong type or size, or holds a value the task
/// cannot use (a missing label, a non-finite feature). Raised at Fit or GetOutputSchema time, before any training.
/// </summary>
public sealed class SchemaMismatchException : ArgumentException
{
    /// <summary>Creates the exception.</summary>
    public SchemaMismatchException(string columnName, string expected, string found)
        : base($"Column '{columnName}': expected {expected}, found {found}.")
    {
        ColumnName = columnName;
        Expected = expected;
        Found = found;
    }

    /// <summary>The column involved.</summary>
    public string ColumnName { get; }

    /// <summary>What was expected.</summary>
    public string Expected { get; }

    /// <summary>What was found.</summary>
    public string Found { get; }
}
