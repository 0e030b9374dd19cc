import { useState, type FormEvent } from "react";
import { errorMessage, login, publicApi } from "../api/client";
import { Link } from "../lib/Link";

export function LoginPage() {
  const [identifier, setIdentifier] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(await login(identifier, password));
    setBusy(false);
  }

  return (
    <main className="auth">
      <h1>Cascade</h1>
      <form onSubmit={submit} aria-label="Log in">
        <h2>Log in</h2>
        <label>Email or username
          <input data-testid="login-identifier" autoComplete="username" value={identifier}
                 onChange={(e) => setIdentifier(e.target.value)} required />
        </label>
        <label>Password
          <input data-testid="login-password" type="password" autoComplete="current-password"
                 value={password} onChange={(e) => setPassword(e.target.value)} required />
        </label>
        {error && <p role="alert" className="form-error">{error}</p>}
        <button data-testid="login-submit" type="submit" disabled={busy}>Log in</button>
        <p>No account? <Link to="/signup">Sign up</Link></p>
      </form>
    </main>
  );
}

export function SignupPage() {
  const [email, setEmail] = useState("");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    const { error: failure } = await publicApi.POST("/api/v1/users", { body: { email, username, password } });
    if (failure) {
      setError(errorMessage(failure, "sign-up failed"));
      setBusy(false);
      return;
    }
    setError(await login(username, password));
    setBusy(false);
  }

  return (
    <main className="auth">
      <h1>Cascade</h1>
      <form onSubmit={submit} aria-label="Sign up">
        <h2>Create an account</h2>
        <label>Email
          <input data-testid="signup-email" type="email" autoComplete="email" value={email}
                 onChange={(e) => setEmail(e.target.value)} required />
        </label>
        <label>Username
          <input data-testid="signup-username" autoComplete="username" value={username}
                 onChange={(e) => setUsername(e.target.value)} required />
        </label>
        <label>Password
          <input data-testid="signup-password" type="password" autoComplete="new-password"
                 value={password} onChange={(e) => setPassword(e.target.value)} required />
        </label>
        {error && <p role="alert" className="form-error">{error}</p>}
        <button data-testid="signup-submit" type="submit" disabled={busy}>Sign up</button>
        <p>Have an account? <Link to="/login">Log in</Link></p>
      </form>
    </main>
  );
}
