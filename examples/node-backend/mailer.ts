import nodemailer from "nodemailer";

// Where sign-in emails go. The app depends only on `Mailer`; two are here:
// real SMTP through nodemailer, and one that prints the mail (for trying the
// example without a mail server).

export interface Mail {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

export interface Mailer {
  send(mail: Mail): Promise<void>;
  close?(): void;
}

export interface SmtpMailerOptions {
  /** e.g. smtp://127.0.0.1:2525 or smtps://user:pass@mail.example.com */
  readonly url: string;
  /** The From address, e.g. "Acme <no-reply@acme.example>". */
  readonly from: string;
}

export function createSmtpMailer(options: SmtpMailerOptions): Mailer {
  const transport = nodemailer.createTransport(options.url);
  return {
    async send(mail) {
      await transport.sendMail({ from: options.from, to: mail.to, subject: mail.subject, text: mail.text, html: mail.html });
    },
    close: () => transport.close(),
  };
}

/** Prints each mail's text part: for development only (it shows the link and the code). */
export function createConsoleMailer(write: (line: string) => void = (line) => process.stdout.write(`${line}\n`)): Mailer {
  return {
    async send(mail) {
      write(`--- mail to ${mail.to}: ${mail.subject}\n${mail.text}\n---`);
    },
  };
}
