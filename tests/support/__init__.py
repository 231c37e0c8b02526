"""What the tests share: the tiny hand-made model (``tiny``), a real server process
(``serverproc``), a local stand-in for the hub (``fakehub``) and for Lambda (``fakelambda``),
the Node.js packages (``nodejs``), headless Chromium (``browser``), the docs tier's block runner
(``docs_blocks``) and running as an unprivileged user (``unprivileged``)."""
